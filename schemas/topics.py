"""MQTT topic names of wire protocol v1 (DESIGN §4, normative)."""

import functools
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

PREFIX: Final = "coreline/v1"
EVENTS_FILTER: Final = f"{PREFIX}/devices/+/events"
TELEMETRY_FILTER: Final = f"{PREFIX}/devices/+/telemetry"
STATUS_FILTER: Final = f"{PREFIX}/devices/+/status"
GATEWAY_SHARE_GROUP: Final = "coreline-gateway"


class DeviceChannel(StrEnum):
    EVENTS = "events"
    TELEMETRY = "telemetry"
    STATUS = "status"
    CMD = "cmd"
    ACKS = "acks"
    CONFIG = "config"
    """The device's desired configuration, retained (protocol v1.2)."""

    @property
    def is_uplink(self) -> bool:
        """Device → cloud (events, telemetry, status); the rest go to the device."""
        return self in _UPLINK


_UPLINK: Final = frozenset({DeviceChannel.EVENTS, DeviceChannel.TELEMETRY, DeviceChannel.STATUS})


@dataclass(frozen=True, slots=True)
class DeviceTopic:
    device_id: str
    channel: DeviceChannel


_DEVICE_TOPIC: Final = re.compile(
    r"^coreline/v1/devices/([A-Z0-9][A-Z0-9-]{2,63})/(events|telemetry|status|cmd|acks|config)$"
)


def device_topic(device_id: str, channel: DeviceChannel) -> str:
    return f"{PREFIX}/devices/{device_id}/{channel.value}"


def clinic_alerts_topic(clinic_id: str) -> str:
    return f"{PREFIX}/clinics/{clinic_id}/alerts"


def clinic_alert_state_topic(clinic_id: str, alert_id: str) -> str:
    """Where an open alert's latest notice is retained (cleared once it is resolved):
    a subscriber to ``…/alerts/+`` learns every open alert's state on connecting."""
    return f"{clinic_alerts_topic(clinic_id)}/{alert_id}"


def shared_subscription(topic_filter: str, group: str = GATEWAY_SHARE_GROUP) -> str:
    """MQTT 5 shared subscription: the broker hands each message to one group member."""
    return f"$share/{group}/{topic_filter}"


@functools.lru_cache(maxsize=1 << 16)
def parse_device_topic(topic: str) -> DeviceTopic | None:
    """The device and channel a topic names, or ``None`` for anything else.

    Cached: the gateway asks for every message, and a fleet has a few topics per
    device (the value is immutable, so sharing it is safe)."""
    match = _DEVICE_TOPIC.match(topic)
    if match is None:
        return None
    return DeviceTopic(device_id=match.group(1), channel=DeviceChannel(match.group(2)))
