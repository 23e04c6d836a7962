"""Time-based one-time passwords (RFC 6238: 30-second steps, six digits, SHA-1 — what
every authenticator app speaks).

A code is accepted for the step before, the current one and the one after (clock
drift of up to 30 s either way), and only for a step later than the last one
accepted for that account, so a code seen over someone's shoulder cannot be replayed.
"""

import hmac
from datetime import datetime
from typing import Final

import pyotp

ISSUER: Final = "Coreline"
STEP_S: Final = 30
DRIFT_STEPS: Final = 1


def new_secret() -> str:
    return pyotp.random_base32()


def provisioning_uri(secret: str, email: str) -> str:
    """The ``otpauth://`` URI an authenticator app reads (as a QR code or pasted)."""
    return pyotp.TOTP(secret).provisioning_uri(name=email, issuer_name=ISSUER)


def accepted_step(secret: str, code: str, now: datetime, last_step: int | None) -> int | None:
    """The step ``code`` belongs to when it is good now and newer than ``last_step``;
    ``None`` otherwise."""
    code = code.strip().replace(" ", "")
    if len(code) != 6 or not code.isdigit():
        return None
    generator = pyotp.TOTP(secret)
    current = int(now.timestamp()) // STEP_S
    for step in range(current - DRIFT_STEPS, current + DRIFT_STEPS + 1):
        expected = generator.at(step * STEP_S)
        if hmac.compare_digest(expected, code) and (last_step is None or step > last_step):
            return step
    return None
