"""The device port: how handpiece firmware (or the simulator) hands the agent what
happened.  Firmware reports facts; the agent gives them identity (``event_id``),
order (``seq``) and tamper evidence (the hash chain) in its outbox."""

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from schemas import Heartbeat

if TYPE_CHECKING:
    from edge_agent.interlocks import Verdict


@dataclass(frozen=True, slots=True)
class DeviceReading:
    """One event as firmware sees it: a type from DESIGN §4 and its ``data``.

    ``data`` holds JSON values exactly as they will be hashed (timestamps as
    RFC 3339 UTC text ending in ``Z``).
    """

    type: str
    occurred_at: datetime
    data: Mapping[str, Any] = field(default_factory=dict)


class DevicePort(Protocol):
    """What the agent offers the firmware side."""

    def report(self, reading: DeviceReading) -> "Verdict":
        """Record an event durably, unless a safety interlock refuses it; returns once
        it is in the outbox, with the interlocks' verdict (``edge_agent.interlocks``)."""
        ...

    def heartbeat(self, sample: Heartbeat) -> None:
        """Offer a telemetry sample (best effort, QoS 0: may be dropped when offline)."""
        ...
