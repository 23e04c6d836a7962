"""C2SP signed notes with Ed25519 (https://c2sp.org/signed-note).

A note is its text (lines, each ending in a newline), a blank line, and one
signature line per signer: ``— <key name> <base64(key hash || signature)>``.  The
signature covers the text alone.  The key hash (the first four bytes of
SHA-256(name || "\\n" || 0x01 || public key)) lets a verifier skip signatures by
keys it does not know without trying them.
"""

import base64
import binascii
import hashlib
from dataclasses import dataclass
from typing import Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

ED25519_TYPE: Final = b"\x01"
_SIGNATURE_DASH: Final = "\u2014 "
_KEY_HASH_SIZE: Final = 4
_SIGNATURE_SIZE: Final = 64
_PUBLIC_KEY_SIZE: Final = 32


class NoteError(ValueError):
    """A note, a signature line or a verifier key that is malformed or does not verify."""


def raw_public_key(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def key_hash(name: str, public_key: bytes) -> bytes:
    """The four bytes naming an Ed25519 key in signature lines and verifier keys."""
    return hashlib.sha256(name.encode() + b"\n" + ED25519_TYPE + public_key).digest()[
        :_KEY_HASH_SIZE
    ]


def _valid_name(name: str) -> bool:
    return bool(name) and not any(char.isspace() or char == "+" for char in name)


@dataclass(frozen=True, slots=True)
class Verifier:
    """A named Ed25519 public key, as a C2SP verifier key says it."""

    name: str
    public_key: bytes

    def __post_init__(self) -> None:
        if not _valid_name(self.name):
            raise NoteError(f"a key name has no spaces or '+': {self.name!r}")
        if len(self.public_key) != _PUBLIC_KEY_SIZE:
            raise NoteError(f"an Ed25519 public key is 32 bytes, not {len(self.public_key)}")

    @property
    def key_hash(self) -> bytes:
        return key_hash(self.name, self.public_key)

    def text(self) -> str:
        """``<name>+<hex key hash>+<base64(0x01 || public key)>``."""
        encoded = base64.b64encode(ED25519_TYPE + self.public_key).decode()
        return f"{self.name}+{self.key_hash.hex()}+{encoded}"

    @classmethod
    def parse(cls, text: str) -> "Verifier":
        parts = text.strip().split("+", 2)
        if len(parts) != 3:
            raise NoteError("a verifier key reads <name>+<hex key hash>+<base64 key>")
        name, hash_hex, encoded = parts
        try:
            typed = base64.b64decode(encoded, validate=True)
        except binascii.Error as error:
            raise NoteError(f"the verifier key is not base64: {error}") from None
        if typed[:1] != ED25519_TYPE:
            raise NoteError("the verifier key is not an Ed25519 key (type 0x01)")
        found = cls(name, typed[1:])
        if found.key_hash.hex() != hash_hex.lower():
            raise NoteError("the verifier key's hash does not match its name and key")
        return found

    def verify(self, note: str) -> str:
        """The note's text when one of its signatures is this key's and verifies;
        raises ``NoteError`` naming what is wrong otherwise."""
        text, signatures = split_note(note)
        key = Ed25519PublicKey.from_public_bytes(self.public_key)
        for name, signed in signatures:
            if name != self.name or signed[:_KEY_HASH_SIZE] != self.key_hash:
                continue
            try:
                key.verify(signed[_KEY_HASH_SIZE:], text.encode())
            except InvalidSignature:
                raise NoteError(f"the signature by {name} does not verify") from None
            return text
        raise NoteError(f"the note carries no signature by {self.name}")


@dataclass(frozen=True, slots=True)
class Signer:
    """A named Ed25519 private key that signs notes."""

    name: str
    private_key: Ed25519PrivateKey

    @property
    def verifier(self) -> Verifier:
        return Verifier(self.name, raw_public_key(self.private_key.public_key()))

    def sign(self, text: str) -> str:
        """The signed note of ``text`` (lines each ending in a newline)."""
        if not text.endswith("\n") or "\n\n" in text:
            raise NoteError("a note's text is non-empty lines, each ending in a newline")
        signature = self.private_key.sign(text.encode())
        encoded = base64.b64encode(self.verifier.key_hash + signature).decode()
        return f"{text}\n{_SIGNATURE_DASH}{self.name} {encoded}\n"


def split_note(note: str) -> tuple[str, list[tuple[str, bytes]]]:
    """A note's text and its signatures (key name, key hash || signature)."""
    cut = note.rfind("\n\n")
    if cut < 0 or not note.endswith("\n"):
        raise NoteError("a signed note is its text, a blank line and signature lines")
    text, lines = note[: cut + 1], note[cut + 2 : -1].split("\n")
    signatures = []
    for line in lines:
        if not line.startswith(_SIGNATURE_DASH):
            raise NoteError(f"not a signature line: {line!r}")
        name, _, encoded = line[len(_SIGNATURE_DASH) :].partition(" ")
        try:
            signed = base64.b64decode(encoded, validate=True)
        except binascii.Error:
            raise NoteError(f"the signature by {name} is not base64") from None
        if not _valid_name(name) or len(signed) != _KEY_HASH_SIZE + _SIGNATURE_SIZE:
            raise NoteError(f"malformed signature line: {line!r}")
        signatures.append((name, signed))
    return text, signatures
