"""Device seals (DESIGN §4.1, protocol v1.1): the ``seal`` member of an event batch,
the exact bytes a device signs, key ids, and a device's keys folded from its
registry stream.  Pure: no cryptography here (``seal_keys`` signs and verifies), so
the decoder and every fold stay free of it.

One seal covers the whole stream up to its ``seq``: it signs the hash of the
batch's last event, and every hash covers its ``prev_hash``.
"""

import base64
import binascii
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Annotated, Final

from pydantic import BaseModel, StringConstraints

from schemas.fields import FROZEN_STRICT_SHAPE, Seq

SEAL_CONTEXT: Final = "coreline-seal/v1"
"""First line of every signed message: a seal can never be mistaken for another
signature the same key might make."""
ED25519: Final = "ed25519"
PUBLIC_KEY_BYTES: Final = 32
SIGNATURE_BYTES: Final = 64

KeyId = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{16}$")]
PublicKeyText = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{43}$")]
"""Base64url without padding of a raw 32-byte Ed25519 public key."""
SignatureText = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{86}$")]
"""Base64url without padding of a 64-byte Ed25519 signature."""


class BatchSeal(BaseModel):
    """The ``seal`` member of a batch: ``sig`` signs ``seal_message(device, seq, hash)``
    where ``hash`` is the hash of the batch's last event, the one with this ``seq``."""

    model_config = FROZEN_STRICT_SHAPE

    key_id: KeyId
    seq: Seq
    sig: SignatureText


def seal_message(device_id: str, seq: int, event_hash: str) -> bytes:
    """The UTF-8 bytes a seal signs (normative)."""
    return f"{SEAL_CONTEXT}\n{device_id}\n{seq}\n{event_hash}\n".encode()


def key_id_of(public_key: bytes) -> str:
    """Hex of the first 8 bytes of SHA-256 of the raw public key (normative)."""
    return hashlib.sha256(public_key).digest()[:8].hex()


def b64url(raw: bytes) -> str:
    """Base64url without padding, as seals and key registrations write bytes."""
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def from_b64url(text: str) -> bytes:
    """The bytes of unpadded base64url ``text``; raises ``ValueError`` on anything else."""
    if not text.isascii() or "=" in text:
        raise ValueError("expected base64url without padding")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as error:
        raise ValueError(f"not base64url: {error}") from None


def public_key_of_text(text: str) -> bytes:
    """A raw 32-byte public key from its base64url text; ``ValueError`` otherwise."""
    raw = from_b64url(text.strip())
    if len(raw) != PUBLIC_KEY_BYTES:
        raise ValueError(f"an Ed25519 public key is {PUBLIC_KEY_BYTES} bytes, not {len(raw)}")
    return raw


@dataclass(frozen=True, slots=True)
class SealClaim:
    """A batch's seal as decoded, with the hash it must sign.

    ``event_hash`` is the hash of the batch's decoded event at ``seal.seq``, or
    ``None`` when the seal does not name the batch's last event or that event did
    not decode: such a seal authenticates nothing and can never verify.
    """

    device_id: str
    seal: BatchSeal
    event_hash: str | None

    @property
    def message(self) -> bytes | None:
        if self.event_hash is None:
            return None
        return seal_message(self.device_id, self.seal.seq, self.event_hash)


@dataclass(frozen=True, slots=True)
class RegisteredKey:
    """One seal key of a device, as its registry stream says."""

    key_id: str
    public_key: bytes
    revoked: bool = False
    sealed_through: int | None = None
    """For a revoked key, the highest seq it had sealed when the revocation was
    applied (0: none); ``None`` while it is valid, or when a revocation did not say."""

    def may_seal(self) -> bool:
        """Whether a new batch sealed by this key may be accepted."""
        return not self.revoked

    def covers(self, seq: int) -> bool:
        """Whether a stored seal by this key at ``seq`` counts: revoking a key does
        not un-verify what it sealed before the revocation."""
        return not self.revoked or self.sealed_through is None or seq <= self.sealed_through


@dataclass(frozen=True, slots=True)
class Keyring:
    """A device's seal keys by key id: empty until its first registration, and from
    then on never empty again (revoked keys stay, for what they sealed)."""

    keys: Mapping[str, RegisteredKey] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def enrolled(self) -> bool:
        """From its first registered key on, a device must seal every batch."""
        return bool(self.keys)

    def active(self, key_id: str) -> RegisteredKey | None:
        key = self.keys.get(key_id)
        return key if key is not None and key.may_seal() else None

    def registered(self, public_key: bytes) -> "Keyring":
        key_id = key_id_of(public_key)
        if key_id in self.keys:
            return self  # registering a key twice changes nothing (a revoked one stays so)
        return Keyring(MappingProxyType({**self.keys, key_id: RegisteredKey(key_id, public_key)}))

    def revoked(self, key_id: str, sealed_through: int | None) -> "Keyring":
        key = self.keys.get(key_id)
        if key is None or key.revoked:
            return self
        revoked = replace(key, revoked=True, sealed_through=sealed_through)
        return Keyring(MappingProxyType({**self.keys, key_id: revoked}))


KEY_REGISTERED: Final = "device.key_registered"
KEY_REVOKED: Final = "device.key_revoked"
KEY_EVENT_TYPES: Final = frozenset({KEY_REGISTERED, KEY_REVOKED})


def fold_keyring(key_events: Iterable[tuple[str, Mapping[str, object]]]) -> Keyring:
    """A device's keys from its registry stream's events, as ``(type, data)`` pairs in
    seq order; other registry events are passed over."""
    keyring = Keyring()
    for kind, data in key_events:
        if kind == KEY_REGISTERED:
            keyring = keyring.registered(public_key_of_text(str(data["public_key"])))
        elif kind == KEY_REVOKED:
            through = data.get("sealed_through")
            keyring = keyring.revoked(
                str(data["key_id"]), through if isinstance(through, int) else None
            )
    return keyring
