"""Webhook secrets and signatures.  Pure; receivers may copy ``verify_signature``.

Secrets are never stored: a webhook's secret is derived from the platform's master
key, the webhook's id and its secret version, so rotating a secret is bumping the
version, and a leaked database row reveals nothing that signs.

The secret handed to the clinic is a 64-character hex string; the HMAC key is that
string's UTF-8 bytes, so a receiver uses exactly the text it was given.

Signed message: ``f"{timestamp}."`` followed by the raw request body, where
``timestamp`` is the ``X-Coreline-Timestamp`` header (Unix seconds).  Signing the
timestamp with the body lets a receiver refuse replays of old requests.
"""

import hashlib
import hmac
from typing import Final

SIGNATURE_PREFIX: Final = "sha256="
DEFAULT_TOLERANCE_S: Final = 300.0


def derive_secret(master_key: bytes, webhook_id: str, secret_version: int) -> str:
    """HMAC-SHA256(master key, ``"{webhook_id}:{secret_version}"``), hex."""
    message = f"{webhook_id}:{secret_version}".encode()
    return hmac.new(master_key, message, hashlib.sha256).hexdigest()


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The ``X-Coreline-Signature`` header value for ``body`` sent at ``timestamp``."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return SIGNATURE_PREFIX + digest.hexdigest()


def verify_signature(
    secret: str,
    timestamp: int | str,
    body: bytes,
    header: str,
    *,
    now: float | None = None,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
) -> bool:
    """Whether ``header`` (``X-Coreline-Signature``) signs ``body`` at ``timestamp``
    (``X-Coreline-Timestamp``) with ``secret``.

    Give ``now`` (Unix seconds) to also refuse a timestamp more than ``tolerance_s``
    away from it: a captured request replayed later then fails.
    """
    try:
        seconds = int(timestamp)
    except ValueError:
        return False
    if now is not None and abs(now - seconds) > tolerance_s:
        return False
    if not header.startswith(SIGNATURE_PREFIX):
        return False
    # Constant time, so response timing does not reveal how much of a forgery matched.
    return hmac.compare_digest(sign(secret, seconds, body).encode(), header.strip().encode())


def signed_headers(secret: str, timestamp: int, body: bytes, event_id: str) -> dict[str, str]:
    """Every header of a webhook request but the transport's own."""
    return {
        "Content-Type": "application/json",
        "X-Coreline-Event": event_id,
        "X-Coreline-Timestamp": str(timestamp),
        "X-Coreline-Signature": sign(secret, timestamp, body),
    }
