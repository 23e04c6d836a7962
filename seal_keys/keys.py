"""A device's private seal key and the public half the platform registers.

Seals are verified by libsodium (PyNaCl), at half the CPU of OpenSSL's Ed25519 on
the gateway's hot path, and stricter: it refuses small-order and non-canonical
keys and signatures whose ``S`` is not reduced, where OpenSSL accepts, under the
identity point as key, a signature anyone can make.  Keys that are not the public
half of any private key (those libsodium cannot use among them) are refused where
they are registered (``usable_public_key``).  Key files, PEM and signing stay with
``cryptography``.
"""

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Self

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from nacl.bindings import crypto_core_ed25519_is_valid_point, crypto_sign_open
from nacl.exceptions import BadSignatureError

from schemas.seals import (
    PUBLIC_KEY_BYTES,
    SIGNATURE_BYTES,
    BatchSeal,
    SealClaim,
    b64url,
    from_b64url,
    key_id_of,
    public_key_of_text,
    seal_message,
)

_RAW_PRIVATE_BYTES: Final = 32


class SealKeyError(ValueError):
    """A key file or key text that is not an Ed25519 key."""


def usable(raw: bytes) -> bool:
    """Whether ``raw`` is the public half of some Ed25519 private key: the canonical
    encoding of a point of the prime-order group.  Any other 32 bytes either verify
    nothing or, of small order, verify signatures nobody's private key made."""
    return len(raw) == PUBLIC_KEY_BYTES and crypto_core_ed25519_is_valid_point(raw)


def usable_public_key(text: str) -> bytes:
    """The raw public key of base64url ``text``, as registration accepts it; a
    ``SealKeyError`` (a ``ValueError``) naming what is wrong otherwise."""
    try:
        raw = public_key_of_text(text)
    except ValueError as error:
        raise SealKeyError(str(error)) from None
    if not usable(raw):
        raise SealKeyError(
            "not an Ed25519 public key: not the canonical encoding of a point of the "
            "prime-order group (small-order, mixed-order, off-curve and non-canonical keys "
            "are refused)"
        )
    return raw


class PublicSealKey:
    """A registered public key, parsed once: the gateway verifies thousands of seals
    with it.  One registered before keys were checked at registration, and not
    ``usable``, verifies nothing."""

    __slots__ = ("_usable", "key_id", "raw")

    def __init__(self, raw: bytes) -> None:
        if len(raw) != PUBLIC_KEY_BYTES:
            raise SealKeyError(f"an Ed25519 public key is 32 bytes, not {len(raw)}")
        self.raw = raw
        self.key_id = key_id_of(raw)
        self._usable = usable(raw)

    def verifies(self, message: bytes, sig: str) -> bool:
        try:
            signature = from_b64url(sig)
        except ValueError:
            return False
        # The length first: the signed form is the signature and the message joined.
        if len(signature) != SIGNATURE_BYTES or not self._usable:
            return False
        try:
            crypto_sign_open(signature + message, self.raw)
        except BadSignatureError:
            return False
        return True


def verify_claim(key: PublicSealKey, claim: SealClaim) -> bool:
    """Whether ``claim``'s signature is the key's over the hash it must sign."""
    message = claim.message
    return (
        message is not None
        and claim.seal.key_id == key.key_id
        and key.verifies(message, claim.seal.sig)
    )


@dataclass(frozen=True, slots=True)
class SealKey:
    """A device's private Ed25519 key: it seals batches (on a handpiece it lives in
    the secure element; the agent reads it from a file, the simulator derives it)."""

    private: Ed25519PrivateKey

    @classmethod
    def generate(cls) -> Self:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> Self:
        """The key whose raw 32-byte private form is ``seed``."""
        if len(seed) != _RAW_PRIVATE_BYTES:
            raise SealKeyError(f"an Ed25519 private key is 32 bytes, not {len(seed)}")
        return cls(Ed25519PrivateKey.from_private_bytes(seed))

    @classmethod
    def derived(cls, secret: str) -> Self:
        """A key determined by ``secret`` (the simulator's: fleet seed and device id),
        so tests and the demo can register it without asking the device."""
        return cls.from_seed(hashlib.sha256(f"coreline-sim-seal/v1\n{secret}".encode()).digest())

    @classmethod
    def load(cls, path: Path) -> Self:
        """A key file: PEM (PKCS #8) or the raw 32 private bytes."""
        content = path.read_bytes()
        if len(content) == _RAW_PRIVATE_BYTES:
            return cls.from_seed(content)
        try:
            key = serialization.load_pem_private_key(content, password=None)
        except (ValueError, TypeError) as error:
            raise SealKeyError(f"{path}: not a PEM or raw Ed25519 private key") from error
        if not isinstance(key, Ed25519PrivateKey):
            raise SealKeyError(f"{path}: an Ed25519 key is needed, not {type(key).__name__}")
        return cls(key)

    def pem(self) -> bytes:
        return self.private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    @property
    def public_raw(self) -> bytes:
        return self.private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )

    @property
    def public_text(self) -> str:
        """What ``coreline device key add --public-key`` takes."""
        return b64url(self.public_raw)

    @property
    def key_id(self) -> str:
        return key_id_of(self.public_raw)

    def seal(self, device_id: str, seq: int, event_hash: str) -> BatchSeal:
        """The seal of a batch whose last event is ``seq`` with hash ``event_hash``."""
        sig = self.private.sign(seal_message(device_id, seq, event_hash))
        return BatchSeal(key_id=self.key_id, seq=seq, sig=b64url(sig))
