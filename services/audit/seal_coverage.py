"""How far a device stream is sealed (DESIGN §4.1), from its stored seals, the stored
hashes they sign, and the device's registered keys.  Pure, apart from the one
signature check per seal (``seal_keys``).

A stream is ``signed through seq N`` when the highest stored seal that verifies is
at N: every hash covers its ``prev_hash``, so that seal vouches for 1..N.  A stored
seal that does not verify under the key it names, names a key the device never
registered, or was made by a key after its revocation, fails the stream: nothing
stores such a seal but tampering.  Seals over events not stored (yet) are passed
over: the chain audit reports what is missing.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from schemas.seals import BatchSeal, Keyring, SealClaim
from seal_keys import PublicSealKey, verify_claim
from services.eventstore.ports import StoredSeal


@dataclass(frozen=True, slots=True)
class SealCoverage:
    signed_through: int | None
    """The highest seq a verified seal covers (``None``: no seal verified)."""
    failure: str | None = None
    """The first stored seal that does not verify, said in words."""

    def line(self, stream_id: str, width: int = 0) -> str:
        name = stream_id.ljust(width)
        if self.failure is not None:
            return f"{name}  SEAL BROKEN {self.failure}"
        if self.signed_through is None:
            return f"{name}  unsigned"
        return f"{name}  signed through seq {self.signed_through}"


def seal_coverage(
    device_id: str,
    keyring: Keyring,
    seals: Iterable[StoredSeal],
    stored_hashes: Mapping[int, str],
) -> SealCoverage:
    """``stored_hashes`` holds the stored hash of each sealed seq that is stored."""
    public: dict[str, PublicSealKey] = {}
    signed_through: int | None = None
    for stored in seals:
        event_hash = stored_hashes.get(stored.seq)
        if event_hash is None:
            continue
        key = keyring.keys.get(stored.key_id)
        if key is None:
            return SealCoverage(signed_through, _at(stored, "names a key never registered"))
        if not key.covers(stored.seq):
            return SealCoverage(signed_through, _at(stored, "was made after its key's revocation"))
        verifier = public.setdefault(key.key_id, PublicSealKey(key.public_key))
        seal = BatchSeal(key_id=stored.key_id, seq=stored.seq, sig=stored.sig)
        if not verify_claim(verifier, SealClaim(device_id, seal, event_hash)):
            return SealCoverage(signed_through, _at(stored, "does not verify over its event"))
        signed_through = max(signed_through or 0, stored.seq)
    return SealCoverage(signed_through)


def _at(seal: StoredSeal, problem: str) -> str:
    return f"at seq {seal.seq}: the seal by key {seal.key_id} {problem}"
