"""C2SP signed notes (Ed25519) and the tlog-checkpoint bodies they carry.

A signed note is its text (lines ending in newline), a blank line, then signature
lines ``— <key name> <base64(4-byte key id || signature)>``.  The key id is the
first 4 bytes of SHA-256(key name || 0x0A || 0x01 || public key), and a verifier
key is written ``<key name>+<hex key id>+<base64(0x01 || public key)>``.  A
checkpoint's text is its origin, its tree size in decimal and its base64 root hash,
one per line, then optional extension lines.
"""

import base64
import binascii
import hashlib
from dataclasses import dataclass
from typing import Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from coreline_verify.merkle import HASH_BYTES

_ED25519_TYPE: Final = b"\x01"
_SIGNATURE_PREFIX: Final = "\u2014 "  # an em dash and a space
_KEY_ID_BYTES: Final = 4


class NoteError(ValueError):
    """A malformed note or key, or a signature that does not verify."""


@dataclass(frozen=True, slots=True)
class VerifierKey:
    name: str
    key_id: bytes
    public_key: Ed25519PublicKey


@dataclass(frozen=True, slots=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes
    text: str
    """The signed text, kept to compare checkpoints exactly."""


def _b64(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as error:
        raise NoteError(f"{text!r} is not base64") from error


def key_id_for(name: str, raw_public_key: bytes) -> bytes:
    digest = hashlib.sha256(name.encode("utf-8") + b"\n" + _ED25519_TYPE + raw_public_key)
    return digest.digest()[:_KEY_ID_BYTES]


def parse_verifier_key(vkey: str) -> VerifierKey:
    """Read ``<name>+<hex key id>+<base64(0x01 || public key)>`` and check its key id."""
    name, plus, rest = vkey.strip().partition("+")
    hex_id, plus_again, encoded = rest.partition("+")
    if not (name and plus and plus_again) or any(char.isspace() for char in name):
        raise NoteError("a verifier key reads <name>+<hex key id>+<base64 key>")
    try:
        key_id = bytes.fromhex(hex_id)
    except ValueError as error:
        raise NoteError(f"{hex_id!r} is not a hex key id") from error
    typed = _b64(encoded)
    if len(typed) != 33 or typed[:1] != _ED25519_TYPE:
        raise NoteError("the verifier key is not an Ed25519 key")
    if key_id != key_id_for(name, typed[1:]):
        raise NoteError("the verifier key's id does not match its name and key")
    return VerifierKey(name, key_id, Ed25519PublicKey.from_public_bytes(typed[1:]))


def verify_note(note: str, key: VerifierKey) -> str:
    """Return the note's text if one of its signatures is ``key``'s and verifies.
    Signatures by other keys (witness cosignatures, say) are passed over."""
    separator = note.rfind("\n\n")
    if separator < 0 or not note.endswith("\n"):
        raise NoteError("not a signed note: no blank line before the signatures")
    text = note[: separator + 1]
    signed = False
    for line in note[separator + 2 :].splitlines():
        if not line.startswith(_SIGNATURE_PREFIX):
            raise NoteError(f"{line!r} is not a signature line")
        name, _, encoded = line[len(_SIGNATURE_PREFIX) :].rpartition(" ")
        if name != key.name:
            continue
        signature = _b64(encoded)
        if signature[:_KEY_ID_BYTES] != key.key_id:
            continue
        try:
            key.public_key.verify(signature[_KEY_ID_BYTES:], text.encode("utf-8"))
        except InvalidSignature as error:
            raise NoteError(f"the signature by {key.name} does not verify") from error
        signed = True
    if not signed:
        raise NoteError(f"no signature by the verifier key {key.name}")
    return text


def parse_checkpoint(text: str) -> Checkpoint:
    """Read the origin, size and root of a checkpoint's (verified) text."""
    lines = text.split("\n")
    if len(lines) < 4 or lines[-1] != "":
        raise NoteError("a checkpoint has an origin, a size and a root hash")
    origin, size_text, root_text = lines[0], lines[1], lines[2]
    if not size_text.isdigit() or (size_text != "0" and size_text.startswith("0")):
        raise NoteError(f"{size_text!r} is not a tree size")
    root = _b64(root_text)
    if len(root) != HASH_BYTES:
        raise NoteError("the root hash is not 32 bytes")
    return Checkpoint(origin=origin, size=int(size_text), root=root, text=text)


def read_checkpoint(note: str, key: VerifierKey) -> Checkpoint:
    """Verify a signed checkpoint note under ``key`` and read it."""
    return parse_checkpoint(verify_note(note, key))
