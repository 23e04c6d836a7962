"""Constrained field types shared by the wire models.

Numbers are strict (no strings, no booleans, no floats standing in for integers):
firmware that sends ``"seq": "41"`` has a bug worth hearing about, and what is
hashed must be exactly what is validated.
"""

from datetime import UTC, datetime
from typing import Annotated, Any, Final
from uuid import UUID

from pydantic import BeforeValidator, ConfigDict, Field, Strict, StringConstraints

DEVICE_ID_PATTERN: Final = r"^[A-Z0-9][A-Z0-9-]{2,63}$"
CLINIC_ID_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9_-]{1,63}$"
MAX_SEQ: Final = 2**53 - 1
"""Canonical JSON represents numbers as IEEE-754 doubles; larger integers are not exact."""

FROZEN_STRICT_SHAPE: Final = ConfigDict(extra="forbid", frozen=True)


def _require_utc_text(value: Any) -> Any:
    """RFC 3339 in UTC with a ``Z``: the only timestamp form the protocol allows."""
    if not isinstance(value, str):
        raise ValueError("timestamp must be an RFC 3339 string")  # noqa: TRY004 - pydantic reports only ValueError
    if not value.endswith("Z") or "T" not in value:
        raise ValueError(
            "timestamp must be RFC 3339 UTC ending in 'Z', e.g. 2026-11-24T09:31:07.250Z"
        )
    return value


DeviceId = Annotated[str, StringConstraints(pattern=DEVICE_ID_PATTERN)]
ClinicId = Annotated[str, StringConstraints(pattern=CLINIC_ID_PATTERN)]
Identifier = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")]
"""Cartridge ids, lots, opaque operator references: short, no spaces, no free text."""
ShortText = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Author = Annotated[str, StringConstraints(min_length=1, max_length=200)]
"""Who recorded a platform event: a person or a machine token described
(``Principal.author``), ``cli:user@host``, or the alert engine."""
LongText = Annotated[str, StringConstraints(max_length=2000)]
Hash64 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
EventUuid = Annotated[UUID, Field()]
UtcTimestamp = Annotated[datetime, BeforeValidator(_require_utc_text)]


def utc_text(moment: datetime) -> str:
    """``moment`` as the wire writes timestamps (DESIGN §4): RFC 3339 in UTC, to the
    millisecond, ending in ``Z``."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


Count = Annotated[int, Strict(), Field(ge=0, le=MAX_SEQ)]
PositiveCount = Annotated[int, Strict(), Field(ge=1, le=MAX_SEQ)]
Seq = PositiveCount
Real = Annotated[float, Strict(), Field(allow_inf_nan=False)]
