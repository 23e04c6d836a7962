"""What one MQTT message means to the gateway.  Pure: topic and bytes in, a value out.

Events become sealed events and rejections; a heartbeat becomes a sample; a status
becomes a presence change; anything else is a rejection with a reason, so no
input, however hostile, can raise past this point.
"""

from dataclasses import dataclass
from datetime import datetime

from pydantic import ValidationError

from schemas import (
    MAX_BATCH_BYTES,
    DecodedBatch,
    DeviceChannel,
    Heartbeat,
    Rejection,
    RejectionReason,
    StatusMessage,
    decode_event_batch,
    describe,
    parse_device_topic,
)
from schemas.telemetry import Presence

MAX_SIDE_MESSAGE_BYTES = 4096
"""Heartbeats and status messages are a few hundred bytes at most."""


@dataclass(frozen=True, slots=True)
class PresenceChange:
    device_id: str
    online: bool
    at: datetime
    last_seq: int | None = None
    """The device's own chain head as it came online (protocol v1.1; ``None`` from v1)."""


Inbound = DecodedBatch | Heartbeat | PresenceChange | Rejection | None
"""``None``: nothing to do (an empty retained status, an operator clearing it)."""


def interpret(topic: str, payload: bytes, received_at: datetime) -> Inbound:
    """Decode one message; never raises."""
    # Identity is the topic's: the broker's ACL ties a device's credentials to it.
    parsed = parse_device_topic(topic)
    if parsed is None or not parsed.channel.is_uplink:
        return Rejection(RejectionReason.IDENTITY, f"not a device uplink topic: {topic!r}", payload)
    device_id = parsed.device_id
    if parsed.channel is DeviceChannel.EVENTS:
        return decode_event_batch(device_id, payload)
    if len(payload) > MAX_SIDE_MESSAGE_BYTES:
        return Rejection(
            RejectionReason.OVERSIZE,
            f"{parsed.channel} message is {len(payload)} bytes; at most "
            f"{MAX_SIDE_MESSAGE_BYTES} expected (events may use up to {MAX_BATCH_BYTES})",
            payload,
            device_id,
        )
    if parsed.channel is DeviceChannel.TELEMETRY:
        return _heartbeat(device_id, payload)
    return _presence(device_id, payload, received_at)


def _heartbeat(device_id: str, payload: bytes) -> Heartbeat | Rejection:
    try:
        sample = Heartbeat.model_validate_json(payload)
    except ValidationError as error:
        return Rejection(RejectionReason.SCHEMA, describe(error), payload, device_id)
    if sample.device_id != device_id:
        return Rejection(
            RejectionReason.IDENTITY,
            f"heartbeat of {sample.device_id} published on the topic of {device_id}",
            payload,
            device_id,
        )
    return sample


def _presence(
    device_id: str, payload: bytes, received_at: datetime
) -> PresenceChange | Rejection | None:
    if not payload:
        return None
    try:
        status = StatusMessage.model_validate_json(payload)
    except ValidationError as error:
        return Rejection(RejectionReason.SCHEMA, describe(error), payload, device_id)
    online = status.state is Presence.ONLINE
    return PresenceChange(device_id, online, received_at, status.last_seq if online else None)
