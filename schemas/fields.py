"""Constrained field types shared by the wire models.

Numbers are strict (no strings, no booleans, no floats standing in for integers):
firmware that sends ``"seq": "41"`` has a bug worth hearing about, and what is
hashed must be exactly what is validated.
"""

from datetime import UTC, datetime
from typing import Annotated, Any, Final
from uuid import UUID

from pydantic import (
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    Strict,
    StringConstraints,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema

DEVICE_ID_PATTERN: Final = r"^[A-Z0-9][A-Z0-9-]{2,63}$"
CLINIC_ID_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9_-]{1,63}$"
MAX_SEQ: Final = 2**53 - 1
"""Canonical JSON represents numbers as IEEE-754 doubles; larger integers are not exact."""

FROZEN_STRICT_SHAPE: Final = ConfigDict(extra="forbid", frozen=True)


class UtcText:
    """RFC 3339 in UTC with a ``Z``: the only timestamp form the protocol allows.

    Marks a ``datetime`` member whose input must be text containing a ``T`` and
    ending in ``Z`` before it is parsed.  The rule is a pydantic-core schema rather
    than a Python validator: the gateway checks three timestamps an event, and a call
    back into Python for each cost more than the datetime parsing itself.  A member so
    marked holds, after validation, the very text that arrived (canonical form counts
    on that)."""

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.chain_schema([_TEXT, _UTC_FORM, handler(source)])

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return handler(core_schema.datetime_schema())


# Refused as a ``ValueError`` raised in a validator would be: the same type, message
# and context text, so dead letters keep their reasons.
_TEXT: Final = core_schema.custom_error_schema(
    core_schema.str_schema(strict=True),
    "value_error",
    custom_error_context={"error": "timestamp must be an RFC 3339 string"},
)
_UTC_FORM: Final = core_schema.custom_error_schema(
    core_schema.str_schema(pattern=r"T(?s:.)*Z\z"),  # a "T" somewhere, a "Z" at the very end
    "value_error",
    custom_error_context={
        "error": "timestamp must be RFC 3339 UTC ending in 'Z', e.g. 2026-11-24T09:31:07.250Z"
    },
)


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
UtcTimestamp = Annotated[datetime, UtcText()]


def utc_text(moment: datetime) -> str:
    """``moment`` as the wire writes timestamps (DESIGN §4): RFC 3339 in UTC, to the
    millisecond, ending in ``Z``."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


Count = Annotated[int, Strict(), Field(ge=0, le=MAX_SEQ)]
PositiveCount = Annotated[int, Strict(), Field(ge=1, le=MAX_SEQ)]
Seq = PositiveCount
Real = Annotated[float, Strict(), Field(allow_inf_nan=False)]
