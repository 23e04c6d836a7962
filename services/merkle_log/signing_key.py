"""The platform's log key: an Ed25519 private key in a PEM file outside the database,
so that whoever can write the database cannot sign checkpoints with it."""

import os
import stat
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
)

from services.merkle_log.errors import LogKeyError
from services.transparency import NoteError, Signer, Verifier


def public_key_path(key_path: Path) -> Path:
    """Where the verifier key is written beside the private key: what the API serves,
    so the API needs no access to the private key."""
    return key_path.with_name(key_path.name + ".pub")


def create_key_file(path: Path, origin: str) -> bool:
    """Write a new key to ``path`` (mode 0600), and its verifier key beside it, unless
    a key is there; whether it wrote one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    try:
        # O_EXCL: two upgrades racing must not each write a key and sign with either.
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(descriptor, "wb") as file:
        file.write(pem)
    public_key_path(path).write_text(Signer(origin, key).verifier.text() + "\n")
    return True


def load_verifier(key_path: Path, origin: str) -> Verifier:
    """The log's verifier key: from the public file beside the key, else from the key."""
    public = public_key_path(key_path)
    if public.exists():
        try:
            verifier = Verifier.parse(public.read_text())
        except NoteError as error:
            raise LogKeyError(f"{public}: {error}") from None
        if verifier.name != origin:
            raise LogKeyError(f"{public} names the log {verifier.name!r}, not {origin!r}")
        return verifier
    return load_signer(key_path, origin).verifier


def load_signer(path: Path, origin: str) -> Signer:
    """The log's signer, named by the log's origin, from the key file at ``path``."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise LogKeyError(
            f"no log key at {path}: run `coreline audit init-key` (or `coreline db upgrade`)"
        ) from None
    if mode & stat.S_IROTH:
        raise LogKeyError(
            f"the log key {path} is readable by every user: chmod 600 it (and consider the "
            "key disclosed: anyone could have signed checkpoints with it)"
        )
    try:
        key = load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError) as error:
        raise LogKeyError(f"the log key {path} is not an unencrypted PEM key: {error}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise LogKeyError(f"the log key {path} is not an Ed25519 key")
    return Signer(origin, key)
