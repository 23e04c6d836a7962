"""Why input was refused: a value, not an exception (errors are values at the boundary)."""

from dataclasses import dataclass
from enum import StrEnum


class RejectionReason(StrEnum):
    MALFORMED = "malformed"
    """Not UTF-8 JSON at all."""
    SCHEMA = "schema"
    """JSON, but not a valid batch or event (unknown type, bad field, empty batch)."""
    IDENTITY = "identity"
    """Topic, batch and event disagree on which device is speaking."""
    INTEGRITY = "integrity"
    """Hash does not match the content, chain does not link, or a seq conflict."""
    OVERSIZE = "oversize"
    """Larger than the protocol allows."""
    SIGNATURE = "signature"
    """A device with a registered key sent a batch without a seal that verifies under
    one of its registered, unrevoked keys (DESIGN §4.1): refused whole."""


@dataclass(frozen=True, slots=True)
class Rejection:
    """Input that must go to the dead-letter store, with why and the bytes themselves."""

    reason: RejectionReason
    detail: str
    raw: bytes
    device_id: str | None = None
    seq: int | None = None

    def __post_init__(self) -> None:
        # Details quote hostile input (member names, tags): keep them printable text
        # that any store and any log takes as is (PostgreSQL text refuses NUL).
        if not self.detail.isprintable():
            object.__setattr__(self, "detail", self.detail.translate(_ESCAPE_CONTROL))


_ESCAPE_CONTROL = {code: f"\\x{code:02x}" for code in (*range(32), 127)}
