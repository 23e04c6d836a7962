"""The store's integrity refusals as the alert engine's input, and the I/O around a
device's incident (``services.alerts.incidents``): reading whether it is still open
from its alert's stream, and raising it again there."""

from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import partial
from typing import Final

import orjson

from schemas import SealedEvent
from schemas.platform_events import AlertRule
from schemas.streams import alert_stream
from services.alerts import events as alert_events
from services.alerts.engine import AlertEngine, IncidentUpdate, Key
from services.alerts.incidents import REFUSED_EVENTS, OpenIncident, Refusal, RefusalTally
from services.eventstore import EventStore, StoredDeadLetter, StoredEvent
from services.projector import metrics

INCIDENT_KEY: Final[Key] = (AlertRule.INTEGRITY.value, REFUSED_EVENTS)
"""The book's key of a device's incident."""
_PLATFORM_TOPIC: Final = "platform/"
"""How the store names the source of a refused platform event (an alert stream's,
say: ``eventstore.append_plan.source_topic``); those are not the device's events."""


def refusals_by_device(letters: Iterable[StoredDeadLetter]) -> dict[str, list[Refusal]]:
    """The integrity dead letters that refused a device's own events, by device."""
    refused: dict[str, list[Refusal]] = {}
    for letter in letters:
        if (
            letter.reason != "integrity"
            or not letter.device_id
            or letter.topic.startswith(_PLATFORM_TOPIC)
        ):
            continue
        refusal = Refusal(letter.id, letter.seq, letter.detail, letter.received_at)
        refused.setdefault(letter.device_id, []).append(refusal)
    return refused


def judge_refusals(
    events: EventStore,
    engine: AlertEngine,
    refused: Mapping[str, Sequence[Refusal]],
    clinic_of: Callable[[str], str | None],
) -> None:
    """Let ``engine`` judge each device's refusals against its open incident."""
    for device_id, refusals in refused.items():
        incident = open_incident(events, engine.book.get(device_id, {}).get(INCIDENT_KEY))
        engine.refused(device_id, refusals, incident, clinic_of(device_id))


def append_incident_updates(events: EventStore, engine: AlertEngine) -> None:
    """Raise each open incident the engine updated again with what it covers now.  One
    a person resolved after ``open_incident`` read it is not reopened: its refusals open
    a new incident instead (its ``alert.raised`` appended here too)."""
    decisions = engine.decisions
    resolved_meanwhile: list[IncidentUpdate] = []
    for update in decisions.updated:
        stream = alert_stream(update.alert_id)
        if events.append_next(stream, partial(incident_after, update)) is None:
            resolved_meanwhile.append(update)
        else:
            metrics.ALERT_EVENTS.labels("alert.raised").inc()
    if resolved_meanwhile:
        first_new = len(decisions.raised)
        for update in resolved_meanwhile:
            engine.refused(update.device_id, update.refusals, None, update.clinic_id)
        fresh = decisions.raised[first_new:]
        metrics.ALERT_EVENTS.labels("alert.raised").inc(events.append(fresh).appended)


def open_incident(events: EventStore, alert_id: str | None) -> OpenIncident | None:
    """The incident ``alert_id`` (a device's book entry) unless a person has resolved
    it: its alert's own stream says, which the read models may not show yet."""
    if alert_id is None:
        return None
    stream = events.read_stream(alert_stream(alert_id))
    if not stream or stream[-1].type == "alert.resolved":
        return None
    latest = next(event for event in reversed(stream) if event.type == "alert.raised")
    context = orjson.loads(latest.body)["data"].get("context", {})
    return OpenIncident(alert_id, RefusalTally.from_context(context))


def incident_after(update: IncidentUpdate, head: StoredEvent | None) -> SealedEvent | None:
    if head is None or head.type == "alert.resolved":
        return None  # resolved since it was read: the caller opens a new incident
    return alert_events.raised_again(
        update.alert_id, update.device_id, update.clinic_id, update.condition,
        seq=head.seq + 1, prev_hash=head.hash, at=max(update.at, head.occurred_at),
    )  # fmt: skip
