"""The envelope every event shares, device-sent or platform-recorded."""

from typing import Literal

from pydantic import BaseModel

from schemas.fields import FROZEN_STRICT_SHAPE, DeviceId, EventUuid, Hash64, Seq, UtcTimestamp


class EventEnvelope(BaseModel):
    """Fields common to every event; subclasses fix ``type`` and ``data``."""

    model_config = FROZEN_STRICT_SHAPE

    event_id: EventUuid
    device_id: DeviceId
    seq: Seq
    occurred_at: UtcTimestamp
    schema_version: Literal[1]
    prev_hash: Hash64
    hash: Hash64
