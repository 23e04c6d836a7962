"""Password hashing with argon2id (argon2-cffi's RFC 9106 low-memory profile).

A failed sign-in costs the same whether or not the account exists: an unknown login
is checked against a hash made once at start-up (``burn_time``), so timing tells an
attacker nothing that the uniform message does not.
"""

import secrets
from typing import Final

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

MIN_LENGTH: Final = 12
MAX_LENGTH: Final = 256
_HASHER: Final = PasswordHasher()
_DUMMY_HASH: Final = _HASHER.hash(secrets.token_urlsafe(16))


def password_problem(password: str) -> str | None:
    """Why a chosen password is not acceptable, or ``None``."""
    if len(password) < MIN_LENGTH:
        return f"a password has at least {MIN_LENGTH} characters"
    if len(password) > MAX_LENGTH:
        return f"a password has at most {MAX_LENGTH} characters"
    return None


def new_password() -> str:
    """A generated password of 120 random bits, handed over once."""
    return secrets.token_urlsafe(15)


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _HASHER.verify(password_hash, password[:MAX_LENGTH])
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def burn_time(password: str) -> None:
    """Spend what verifying a real hash would, for a login that has none."""
    verify_password(_DUMMY_HASH, password)
