"""Events of desired configuration and tracked commands (protocol v1.2).

The handpiece answers in its own stream, sealed like every other event it reports:

* ``config.applied`` ``{version, digest}``: it now enforces that configuration;
* ``config.refused`` ``{version, reason}``: it keeps the one it had;
* ``command.acknowledged`` ``{command_id, cmd, result}``: it ran the command;
* ``command.rejected`` ``{command_id, cmd, reason, detail}``: it did not.

The platform records, in the device's command stream ``commands:{device_id}``:

* ``command.issued`` ``{command_id, cmd, args, expires_at, issued_by}``: a person
  (or token) sent it; it goes to the device's ``cmd`` topic;
* ``command.expired`` ``{command_id}``: its expiry passed with no answer from the
  device.  A device that gets it later still rejects it (``expired``).
"""

from enum import StrEnum
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, Field, StringConstraints

from schemas.device_config import CommandName
from schemas.envelope import EventEnvelope
from schemas.fields import (
    FROZEN_STRICT_SHAPE,
    Author,
    Count,
    EventUuid,
    Hash64,
    LongText,
    PositiveCount,
    ShortText,
    UtcTimestamp,
)

ResultValue = str | int | float | bool | None
"""A command's result is a flat summary (a diagnostics report is a handful of
numbers), never a payload: events stay small."""
CommandArgs = dict[ShortText, Any]


class _Data(BaseModel):
    model_config = FROZEN_STRICT_SHAPE


class CommandRejection(StrEnum):
    """Why a handpiece did not run a command."""

    EXPIRED = "expired"
    """It arrived after its ``expires_at`` (by the device's clock)."""
    UNKNOWN = "unknown"
    """This agent does not know the command."""
    NOT_APPLICABLE = "not_applicable"
    """Known, but it does not apply now (its arguments name nothing the device has)."""
    INVALID = "invalid"
    """The message or its arguments do not validate."""


class ConfigAppliedData(_Data):
    version: PositiveCount
    digest: Hash64
    """``settings_digest`` of the settings now enforced."""


class ConfigRefusedData(_Data):
    version: Count
    """The version refused (0: the message was too malformed to name one)."""
    reason: LongText


class CommandAcknowledgedData(_Data):
    command_id: EventUuid
    cmd: CommandName
    result: dict[ShortText, ResultValue] = Field(default_factory=dict)
    """What running it found, for commands that report (``collect_diagnostics``)."""


class CommandRejectedData(_Data):
    command_id: EventUuid
    cmd: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    """As the message named it: an unknown command is named as sent."""
    reason: CommandRejection
    detail: LongText = ""


class CommandIssuedData(_Data):
    command_id: EventUuid
    cmd: CommandName
    args: CommandArgs = Field(default_factory=dict)
    expires_at: UtcTimestamp
    issued_by: Author


class CommandExpiredData(_Data):
    command_id: EventUuid


class ConfigApplied(EventEnvelope):
    type: Literal["config.applied"]
    data: ConfigAppliedData


class ConfigRefused(EventEnvelope):
    type: Literal["config.refused"]
    data: ConfigRefusedData


class CommandAcknowledged(EventEnvelope):
    type: Literal["command.acknowledged"]
    data: CommandAcknowledgedData


class CommandRejected(EventEnvelope):
    type: Literal["command.rejected"]
    data: CommandRejectedData


class CommandIssued(EventEnvelope):
    type: Literal["command.issued"]
    data: CommandIssuedData


class CommandExpired(EventEnvelope):
    type: Literal["command.expired"]
    data: CommandExpiredData


DeviceAnswerModel = ConfigApplied | ConfigRefused | CommandAcknowledged | CommandRejected
"""What a handpiece reports about configuration and commands: device events."""
CommandRecordModel = CommandIssued | CommandExpired
"""What the platform records about commands: platform events."""

DEVICE_ANSWER_TYPES: Final = frozenset(
    {"config.applied", "config.refused", "command.acknowledged", "command.rejected"}
)
COMMAND_RECORD_TYPES: Final = frozenset({"command.issued", "command.expired"})
