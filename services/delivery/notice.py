"""The alert notice: the JSON document sent to a clinic's MQTT topic and webhooks for
every alert state change (DESIGN §8).  Pure: built from stored events, no I/O."""

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final

import orjson

from schemas import utc_text
from schemas.platform_events import (
    AlertAcknowledged,
    AlertEscalated,
    AlertRaised,
    AlertResolved,
    ContextValue,
)

AlertChange = AlertRaised | AlertEscalated | AlertAcknowledged | AlertResolved
"""An event of an alert's own stream."""

ALERT_STREAM_PREFIX: Final = "alert:"


class AlertState(StrEnum):
    RAISED = "raised"
    ESCALATED = "escalated"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


_STATE_OF_TYPE: Final = {
    "alert.raised": AlertState.RAISED,
    "alert.escalated": AlertState.ESCALATED,
    "alert.acknowledged": AlertState.ACKNOWLEDGED,
    "alert.resolved": AlertState.RESOLVED,
}


@dataclass(frozen=True, slots=True)
class AlertNotice:
    """One alert state change, as receivers see it.

    ``event_id`` names the state-change event: a notice may arrive more than once
    (delivery is at least once), never with another ``event_id``.
    """

    alert_id: str
    device_id: str
    clinic_id: str | None
    rule: str
    subject: str
    severity: str
    state: AlertState
    message: str
    at: str
    """When the state changed, RFC 3339 UTC with a ``Z``."""
    event_id: str
    seq: int
    """The change's place in the alert's stream: 1 raised, then 2, 3."""
    context: dict[str, ContextValue] = field(default_factory=dict)

    def to_json(self) -> bytes:
        """The document, keys in the documented order."""
        return orjson.dumps(self)


def is_alert_stream(stream_id: str) -> bool:
    return stream_id.startswith(ALERT_STREAM_PREFIX)


def state_of(event_type: str) -> AlertState | None:
    """The state an event type moves its alert to (``None``: not an alert event)."""
    return _STATE_OF_TYPE.get(event_type)


def build_notice(
    change: AlertChange, raised: AlertRaised, escalation: AlertEscalated | None = None
) -> AlertNotice:
    """The notice of ``change``; the alert's clinic and subject come from its
    ``alert.raised`` event, its rule, severity, message and context from the newest
    rung it has reached (``escalation``, or ``change`` itself when that is one; else
    the raise), since acknowledgements and resolutions carry only who did what.  The
    message stays the alert's own, so a receiver that only sees the ``resolved``
    notice still knows which condition ended; an escalation is a state change of the
    same ``alert_id``, so a receiver replaces what it showed."""
    alert = raised.data
    rung = change.data if isinstance(change, AlertEscalated) else None
    rung = rung or (escalation.data if escalation is not None else None)
    return AlertNotice(
        alert_id=str(alert.alert_id),
        device_id=change.device_id,
        clinic_id=alert.clinic_id,
        rule=(rung or alert).rule.value,
        subject=alert.subject,
        severity=(rung or alert).severity.value,
        state=_STATE_OF_TYPE[change.type],
        message=(rung or alert).message,
        at=utc_text(change.occurred_at),
        event_id=str(change.event_id),
        seq=change.seq,
        context=dict((rung or alert).context),
    )
