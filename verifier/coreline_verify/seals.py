"""Device seals (DESIGN §4.1): the message a device signs, key ids, and a device's
keys as its registry stream's events declare them."""

import base64
import binascii
import hashlib
from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from coreline_verify.ed25519_points import point_defect

_CONTEXT: Final = "coreline-seal/v1"
_RAW_KEY_BYTES: Final = 32
_KEYS_KEPT: Final = 64


class SealError(ValueError):
    """A key declaration or a seal that does not hold."""


def seal_message(device_id: str, seq: int, event_hash: str) -> bytes:
    """The bytes a device signs to seal its stream up to ``seq``."""
    return f"{_CONTEXT}\n{device_id}\n{seq}\n{event_hash}\n".encode()


def key_id_of(raw_public_key: bytes) -> str:
    """Hex of the first 8 bytes of SHA-256 of the raw 32-byte public key."""
    return hashlib.sha256(raw_public_key).digest()[:8].hex()


def _base64url(text: Any) -> bytes:
    if not isinstance(text, str):
        raise SealError("expected base64url text")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as error:
        raise SealError(f"{text!r} is not base64url") from error


class VerifiedSeal(NamedTuple):
    """A seal whose signature was found to verify, by ``signature_verifies``, over
    the seal message of ``device_id``, the seal's own seq and ``event_hash``, under
    the raw public key ``public_key``: what the checks in order need to take it
    without verifying it again, once they find the same device, hash and key."""

    seal: dict[str, Any]
    device_id: str
    event_hash: str
    public_key: bytes


_public_keys: dict[bytes, Ed25519PublicKey | None] = {}
"""Public keys already loaded, by their raw bytes (a bundle names a few); None for
one that is not a point of the prime-order group, which verifies nothing."""


def _public_key(raw: bytes) -> Ed25519PublicKey | None:
    # OpenSSL checks no group: a small-order key would verify signatures anyone can
    # make, so keys outside the prime-order group are refused here, as the platform
    # refuses them (their seals go to dead letters there).
    if len(_public_keys) >= _KEYS_KEPT:
        _public_keys.clear()
    key = _public_keys[raw] = (
        Ed25519PublicKey.from_public_bytes(raw) if point_defect(raw) is None else None
    )
    return key


def signature_verifies(
    public_key: bytes, seal: dict[str, Any], device_id: str, event_hash: str
) -> bool:
    """Whether the seal's ``sig`` is a signature by ``public_key`` (raw, 32 bytes)
    of the seal message of ``device_id``, the seal's ``seq`` and ``event_hash``;
    never under a key outside the prime-order group."""
    seq = seal.get("seq")
    if type(seq) is not int:
        return False
    try:
        try:
            key = _public_keys[public_key]
        except KeyError:
            key = _public_key(public_key)
        if key is None:
            return False
        key.verify(_base64url(seal.get("sig")), seal_message(device_id, seq, event_hash))
    except (InvalidSignature, SealError, ValueError):
        return False
    return True


@dataclass(slots=True)
class DeviceKeys:
    """One device's seal keys: each registered key (as raw bytes too), why one is
    not usable, and each revocation's log index."""

    registered: dict[str, Ed25519PublicKey] = field(default_factory=dict)
    raw: dict[str, bytes] = field(default_factory=dict)
    revoked_at: dict[str, int] = field(default_factory=dict)
    unusable: dict[str, str] = field(default_factory=dict)
    """Registered keys that are not points of the prime-order group, with why: the
    platform stored some before it refused them at registration.  Such a
    registration is no failure in itself; any seal by the key is."""

    def register(self, data: Any) -> None:
        if not isinstance(data, dict) or data.get("algorithm") != "ed25519":
            raise SealError("a registered key must be an ed25519 key")
        raw = _base64url(data.get("public_key"))
        if len(raw) != _RAW_KEY_BYTES:
            raise SealError("a registered public key must be 32 bytes")
        if data.get("key_id") != key_id_of(raw):
            raise SealError(f"key_id {data.get('key_id')} does not match its public key")
        key_id: str = data["key_id"]
        self.registered[key_id] = Ed25519PublicKey.from_public_bytes(raw)
        self.raw[key_id] = raw
        defect = point_defect(raw)
        if defect is None:
            self.unusable.pop(key_id, None)
        else:
            self.unusable[key_id] = defect

    def revoke(self, data: Any, log_index: int) -> None:
        key_id = data.get("key_id") if isinstance(data, dict) else None
        if not isinstance(key_id, str):
            raise SealError("a revocation must name a key_id")
        # The first revocation counts: a key once revoked stays revoked from there.
        self.revoked_at.setdefault(key_id, log_index)

    def check(
        self,
        seal: Any,
        device_id: str,
        event_hash: str,
        log_index: int,
        verified: VerifiedSeal | None = None,
    ) -> str:
        """Verify a seal over the event at ``log_index``; return its key id.  A seal
        ``verified`` already (for this device and hash, under the key registered
        with its key id) is not verified again."""
        if not isinstance(seal, dict):
            raise SealError("a seal is an object with seq, key_id and sig")
        key_id, seq = seal.get("key_id"), seal.get("seq")
        if type(seq) is not int:
            raise SealError("a seal names the seq it seals")
        key = self.registered.get(key_id) if isinstance(key_id, str) else None
        if key is None:
            raise SealError(f"seal by key {key_id}, which the registry does not register")
        revoked = self.revoked_at.get(key_id)  # type: ignore[arg-type]
        if revoked is not None and revoked < log_index:
            raise SealError(
                f"seal by key {key_id}, revoked before this event "
                f"(log index {revoked} < {log_index})"
            )
        defect = self.unusable.get(key_id)  # type: ignore[arg-type]
        if defect is not None:
            raise SealError(
                f"seal by key {key_id}: its public key is not a point of the prime-order "
                f"group ({defect})"
            )
        if (
            verified is not None
            and verified.seal is seal
            and verified.device_id == device_id
            and verified.event_hash == event_hash
            and verified.public_key == self.raw[key_id]  # type: ignore[index]
        ):
            return str(key_id)  # the very signature check below, made already
        try:
            key.verify(_base64url(seal.get("sig")), seal_message(device_id, seq, event_hash))
        except InvalidSignature as error:
            raise SealError(f"seal by key {key_id} does not verify") from error
        return str(key_id)
