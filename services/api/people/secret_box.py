"""Sealing small secrets (TOTP seeds) at rest with a key only the platform holds.

Fernet (AES-128-CBC with HMAC-SHA256): a sealed value read from a database dump is
useless without the key, and a changed one fails to open rather than opening wrong.
"""

import base64
import hashlib
import hmac
from typing import Final

from cryptography.fernet import Fernet, InvalidToken

_LABEL: Final = b"coreline totp seal v1"


class SecretBox:
    def __init__(self, key: bytes) -> None:
        derived = hmac.new(key, _LABEL, hashlib.sha256).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(derived))

    def seal(self, secret: str) -> str:
        return self._fernet.encrypt(secret.encode()).decode()

    def open(self, sealed: str) -> str | None:
        """The secret, or ``None`` when it was sealed with another key or altered."""
        try:
            return self._fernet.decrypt(sealed.encode()).decode()
        except InvalidToken:
            return None
