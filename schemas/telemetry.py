"""Messages beside the event stream: heartbeats, presence, and commands to a device."""

from enum import StrEnum
from typing import Annotated, Literal, Self

from pydantic import BaseModel, Field, model_validator

from schemas.fields import (
    FROZEN_STRICT_SHAPE,
    Count,
    DeviceId,
    Hash64,
    PositiveCount,
    Real,
    UtcTimestamp,
)


class Heartbeat(BaseModel):
    """One telemetry sample (QoS 0, so occasional loss is expected and harmless)."""

    model_config = FROZEN_STRICT_SHAPE

    device_id: DeviceId
    sampled_at: UtcTimestamp
    battery_pct: Annotated[Real, Field(ge=0, le=100)] | None = None
    temperature_c: Annotated[Real, Field(ge=-40, le=150)] | None = None
    uptime_s: Count | None = None
    rssi_dbm: Annotated[Real, Field(ge=-150, le=0)] | None = None


class Presence(StrEnum):
    ONLINE = "online"
    OFFLINE = "offline"


class StatusMessage(BaseModel):
    """Retained on the status topic; the agent's MQTT will publishes ``offline``.

    Protocol v1.1 (DESIGN §4.2): ``online`` carries the device's own chain head
    (``last_seq`` 0 for an empty outbox), so the platform can ask at once for a tail
    it lacks.  A v1 agent sends the state alone."""

    model_config = FROZEN_STRICT_SHAPE

    state: Presence
    last_seq: Count | None = None
    last_hash: Hash64 | None = None

    @model_validator(mode="after")
    def _head_is_whole(self) -> Self:
        if (self.last_seq is None) != (self.last_hash is None):
            raise ValueError("last_seq and last_hash go together")
        return self


class PlatformAck(BaseModel):
    """Retained on a device's ``acks`` topic (DESIGN §4.2): its stream is stored
    contiguously through ``stored_through``, whose hash is ``hash``."""

    model_config = FROZEN_STRICT_SHAPE

    stored_through: Count
    hash: Hash64


class ResendCommand(BaseModel):
    """Asks a device to publish its events ``from_seq``..``to_seq`` again, unchanged."""

    model_config = FROZEN_STRICT_SHAPE

    cmd: Literal["resend"]
    from_seq: PositiveCount
    to_seq: PositiveCount

    @model_validator(mode="after")
    def _range_is_ordered(self) -> Self:
        if self.to_seq < self.from_seq:
            raise ValueError("to_seq is below from_seq")
        return self
