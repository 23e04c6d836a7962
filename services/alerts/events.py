"""Alert aggregates as events (DESIGN §8): each alert is a stream of its own,
``alert:{alert_id}``, with ``alert.raised`` at seq 1, then ``alert.acknowledged``
and ``alert.resolved`` (and, for an incident a repeat updates, ``alert.raised`` again
in between: ``raised_again``; for a needle-life alert climbing its ladder,
``alert.escalated``: ``escalated``).  Every event's ``occurred_at`` is the platform's
receive time of what caused it; a differing device time rides beside it in the data
(``device_time``).  Events here are built from the condition's own moment and
identity, never the clock, so building one twice gives the same bytes and the
store keeps it once."""

import uuid
from datetime import datetime
from typing import Final

from schemas import GENESIS_HASH, SealedEvent, seal, utc_text
from schemas.streams import alert_stream
from services.alerts.conditions import Condition
from services.alerts.ladder import BASE_RULE, on_ladder

_NAMESPACE: Final = uuid.UUID("5d0c6f38-2f5c-4d4f-9d55-3b3f6d0b7a11")
ENGINE: Final = "coreline-alert-engine"
_OCCURRENCES: Final = frozenset({"session_count_mismatch", "coverage_exceeded"})


def alert_id_for(device_id: str, condition: Condition) -> str:
    """One alert per (device, rule, subject) for things that happened; one per spell
    for conditions that come and go (a cartridge may be worn, replaced, worn again)
    and for incidents over refused events (resolved, then opened again).  A
    needle-life alert is named by its ladder's lowest rule whichever rung it is raised
    on: the ladder is one alert per cartridge."""
    occurrence = condition.rule.value in _OCCURRENCES or condition.subject.startswith("seq-")
    # A spell is named by the device's clock where it has one: a backlog received in
    # one batch gives every fault in it the same receive time, but each its own
    # device time (and alerts named before receive times were shown keep their ids).
    began = condition.device_time or condition.since
    spell = "" if occurrence else f"|{condition.spell or utc_text(began)}"
    rule = BASE_RULE if on_ladder(condition.rule.value) else condition.rule.value
    name = f"{device_id}|{rule}|{condition.subject}{spell}"
    return str(uuid.uuid5(_NAMESPACE, name))


def raised(device_id: str, clinic_id: str | None, condition: Condition) -> SealedEvent:
    alert_id = alert_id_for(device_id, condition)
    data = _raised_data(alert_id, clinic_id, condition)
    return _seal(alert_id, device_id, 1, GENESIS_HASH, "alert.raised", condition.since, data)


def raised_again(
    alert_id: str,
    device_id: str,
    clinic_id: str | None,
    condition: Condition,
    *,
    seq: int,
    prev_hash: str,
    at: datetime,
) -> SealedEvent:
    """A repeat of an open alert's condition, as the next event of its stream: the
    alert raised again with what it says now (DESIGN §8: a repeat updates the alert,
    it does not duplicate it).  Same alert id, rule and subject; the state it was in
    (open, acknowledged) stays."""
    data = _raised_data(alert_id, clinic_id, condition)
    return _seal(alert_id, device_id, seq, prev_hash, "alert.raised", at, data)


def escalated(
    alert_id: str,
    device_id: str,
    condition: Condition,
    *,
    seq: int,
    prev_hash: str,
    at: datetime,
) -> SealedEvent:
    """An open needle-life alert climbing to ``condition``'s rung, as the next event of
    its stream (``ladder``): same alert id and subject, the new rule, severity and
    message.  ``at`` is the platform's receive time of the event that made the rung
    hold, never earlier than the stream's newest event (a stream's times never run
    backwards), so building it twice gives the same bytes."""
    data: dict[str, object] = {
        "alert_id": alert_id,
        "rule": condition.rule.value,
        "severity": condition.severity.value,
        "message": condition.message[:2000],
        "context": condition.context,
    }
    if condition.device_time is not None:
        data["device_time"] = utc_text(condition.device_time)
    return _seal(alert_id, device_id, seq, prev_hash, "alert.escalated", at, data)


def _raised_data(alert_id: str, clinic_id: str | None, condition: Condition) -> dict[str, object]:
    data: dict[str, object] = {
        "alert_id": alert_id,
        "rule": condition.rule.value,
        "subject": condition.subject,
        "severity": condition.severity.value,
        "clinic_id": clinic_id,
        "message": condition.message[:2000],
        "context": condition.context,
    }
    # Only when it differs, so an alert raised without one keeps the bytes it had.
    if condition.device_time is not None:
        data["device_time"] = utc_text(condition.device_time)
    return data


def resolved(
    alert_id: str, device_id: str, seq: int, prev_hash: str, at: datetime, note: str
) -> SealedEvent:
    return _seal(alert_id, device_id, seq, prev_hash, "alert.resolved", at, {
        "alert_id": alert_id, "by": ENGINE, "note": note,
    })  # fmt: skip


def _seal(
    alert_id: str,
    device_id: str,
    seq: int,
    prev_hash: str,
    kind: str,
    at: datetime,
    data: dict[str, object],
) -> SealedEvent:
    return seal(
        {
            "event_id": str(uuid.uuid5(_NAMESPACE, f"{alert_id}|{seq}")),
            "device_id": device_id,
            "seq": seq,
            "type": kind,
            "occurred_at": utc_text(at),
            "schema_version": 1,
            "data": data,
            "prev_hash": prev_hash,
        },
        alert_stream(alert_id),
    )
