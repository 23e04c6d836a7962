"""``coreline projector``: folds the event store into the read models, batch by
batch, each batch's rows and checkpoint committed together.

Exactly once in effect, whatever happens: the device folds apply each device's
events strictly in seq order and ignore what they have already applied, so a batch
read twice (a crash between commit and the next read cannot happen, but a replay
racing the live projector can) changes nothing the second time.
"""

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from functools import partial
from typing import Final

import orjson
from sqlalchemy import Connection

from schemas import SealedEvent
from schemas.streams import alert_stream, is_device_stream
from services.alerts import events as alert_events
from services.alerts import store as alert_store
from services.alerts.engine import AlertDecisions, AlertEngine, Resolution
from services.eventstore import Cursor, EventRecord, EventStore, StoredEvent, save_checkpoint
from services.projections.changes import Applied, SessionChanged, SessionClosed
from services.projections.device import DeviceProjection
from services.projections.facts import fact_from_body, parse_timestamp
from services.projections.fleet import iso_week
from services.projections.read_store import (
    ReadModelStore,
    ReadModelUpdate,
    RegistryEntry,
    document,
    snapshot,
)
from services.projections.session import SessionAudit
from services.projector import metrics

log = logging.getLogger(__name__)

Stored = StoredEvent | EventRecord
"""What a fold reads: a stored event, or the lean record a replay fetches."""

PROJECTOR: Final = "projector"
"""The live projector's checkpoint name."""
_REGISTRY_PREFIX: Final = "registry:"
_ALERT_PREFIX: Final = "alert:"
_TICK_EVERY_S: Final = 1.0
_DEAD_LETTERS: Final = "alert-engine-dead-letters"
"""Checkpoint (its position is a dead-letter id) of the integrity refusals judged."""


class Folder:
    """Folds batches of stored events into read-model rows, holding the device folds
    and registry entries it has touched (loaded through ``load`` when first needed)."""

    def __init__(
        self,
        load_projections: Callable[[Iterable[str]], dict[str, DeviceProjection]],
        load_registry: Callable[[Iterable[str]], dict[str, RegistryEntry]],
        engine: AlertEngine | None = None,
    ) -> None:
        self._load_projections = load_projections
        self._load_registry = load_registry
        self.engine = engine
        self.projections: dict[str, DeviceProjection] = {}
        self.registry: dict[str, RegistryEntry] = {}

    def fold(self, stored: Sequence[Stored], *, device_rows: bool = True) -> ReadModelUpdate:
        """Fold one batch; the rows of every device (unless ``device_rows`` is off: a
        replay writes each device once, at the end), session and registry entry it
        changed."""
        self._load_for(stored)
        update = ReadModelUpdate()
        touched: set[str] = set()
        sessions: dict[str, SessionAudit] = {}
        changed_sessions: dict[str, set[str]] = {}
        registry_changed: set[str] = set()
        for event in stored:
            if is_device_stream(event.stream_id):
                self._fold_device_event(event, update, changed_sessions)
                touched.add(event.device_id)
            elif event.stream_id.startswith(_REGISTRY_PREFIX) and self._fold_registry_event(event):
                registry_changed.add(event.device_id)
                touched.add(event.device_id)
            elif event.stream_id.startswith(_ALERT_PREFIX):
                _fold_alert_event(event, update)
        for device_id in touched:
            projection = self._projection(device_id)
            # Audits once per session per batch: ended ones as the fold lets them go,
            # open ones as they stand.
            for audit in projection.forget_ended_sessions():
                sessions[audit.session_id] = audit
            for session_id in changed_sessions.get(device_id, ()):
                open_audit = projection.session_audit(session_id)
                if open_audit is not None:
                    sessions[session_id] = open_audit
            if device_rows:
                update.devices.append(self.device_row(projection))
        update.sessions = [self._session_row(audit) for audit in sessions.values()]
        update.registry = [self.registry[device_id] for device_id in registry_changed]
        return update

    def _fold_device_event(
        self, event: Stored, update: ReadModelUpdate, changed_sessions: dict[str, set[str]]
    ) -> None:
        projection = self._projection(event.device_id)
        fact = fact_from_body(event.body, event.hash, event.received_at)
        changes = projection.apply(fact)
        if self.engine is not None:
            self.engine.after_fold(
                projection, fact, changes, self._entry(event.device_id).clinic_id
            )
        for change in changes:
            if isinstance(change, SessionChanged | SessionClosed):
                changed_sessions.setdefault(event.device_id, set()).add(change.session_id)
            elif isinstance(change, Applied) and change.fact.type == "cartridge.installed":
                clinic = self._entry(event.device_id).clinic_id or ""
                key = (clinic, iso_week(change.fact.occurred_at))
                update.cartridges_installed[key] = update.cartridges_installed.get(key, 0) + 1

    def _fold_registry_event(self, event: Stored) -> bool:
        body = orjson.loads(event.body)
        data, device_id = body["data"], event.device_id
        entry = self._entry(device_id)
        if event.type == "device.registered":
            self.registry[device_id] = RegistryEntry(
                device_id, entry.clinic_id, data["model"], True
            )
        elif event.type == "device.assigned":
            self.registry[device_id] = RegistryEntry(
                device_id, data["clinic_id"], entry.model, entry.registered
            )
        elif event.type == "device.serviced":
            at = parse_timestamp(body["occurred_at"])
            projection = self._projection(device_id)
            projection.record_service(at, data.get("actuations_at_service"))
            if self.engine is not None:
                self.engine.reevaluate(projection, event.received_at, entry.clinic_id)
        else:
            return False
        return True

    def _load_for(self, stored: Sequence[Stored]) -> None:
        wanted = {event.device_id for event in stored} - self.projections.keys()
        if wanted:
            found = self._load_projections(wanted)
            for device_id in wanted:
                self.projections[device_id] = found.get(device_id) or DeviceProjection(device_id)
        unknown = {event.device_id for event in stored} - self.registry.keys()
        if unknown:
            found_entries = self._load_registry(unknown)
            for device_id in unknown:
                self.registry[device_id] = found_entries.get(device_id) or RegistryEntry(device_id)

    def _projection(self, device_id: str) -> DeviceProjection:
        return self.projections[device_id]

    def _entry(self, device_id: str) -> RegistryEntry:
        return self.registry[device_id]

    def device_row(self, projection: DeviceProjection) -> dict[str, object]:
        summary = projection.summary()
        last_seen = summary.last_received_at or summary.last_occurred_at
        return {
            "device_id": projection.device_id,
            "clinic_id": self._entry(projection.device_id).clinic_id,
            "status": summary.status.value,
            "firmware_version": summary.firmware_version,
            "last_seen": last_seen,
            "summary": document(summary),
            "snapshot": snapshot(projection),
            "open_session_id": summary.open_session_id,
            "waiting_for_seq": summary.waiting_for_seq,
            "updated_at": datetime.now(UTC),
        }

    def _session_row(self, audit: SessionAudit) -> dict[str, object]:
        return {
            "session_id": audit.session_id,
            "device_id": audit.device_id,
            "clinic_id": self._entry(audit.device_id).clinic_id,
            "treatment_area": audit.treatment_area,
            "area_cm2": audit.area_cm2,
            "started_at": audit.started_at,
            "ended_at": audit.ended_at,
            "cores_counted": audit.cores_counted,
            "cores_reported": audit.cores_reported,
            "reconciled": audit.reconciled,
            "coverage_pct": audit.coverage_pct,
            "chain_status": audit.chain_status.value,
            "audit": document(audit),
        }


def _fold_alert_event(event: Stored, update: ReadModelUpdate) -> None:
    """Alert aggregates into ``read_alerts``: raised rows, then their state changes."""
    body = orjson.loads(event.body)
    data, at = body["data"], parse_timestamp(body["occurred_at"])
    if event.type == "alert.raised":
        update.alerts_raised.append({
            "alert_id": data["alert_id"], "device_id": event.device_id,
            "clinic_id": data["clinic_id"], "rule": data["rule"], "subject": data["subject"],
            "severity": data["severity"], "status": "open", "message": data["message"],
            "context": data.get("context", {}), "raised_at": at, "last_seq": event.seq,
        })  # fmt: skip
    elif event.type == "alert.acknowledged":
        update.alert_changes.append((data["alert_id"], {
            "status": "acknowledged", "acknowledged_at": at, "acknowledged_by": data["by"],
            "note": data.get("note"), "last_seq": event.seq,
        }))  # fmt: skip
    elif event.type == "alert.resolved":
        update.alert_changes.append((data["alert_id"], {
            "status": "resolved", "resolved_at": at, "resolved_by": data["by"],
            "note": data.get("note"), "last_seq": event.seq,
        }))  # fmt: skip


class Projector:
    """The live projector: reads after its checkpoint, folds, lets the alert engine
    judge each fold, appends the alert events, commits, repeats.

    Alert events are appended before the batch's commit.  A crash in between folds
    the batch again after the restart, and the engine decides the very same alert
    events (they are built from the events, not the clock), which the store then
    recognises as duplicates.
    """

    def __init__(
        self,
        events: EventStore,
        read_models: ReadModelStore,
        *,
        name: str = PROJECTOR,
        batch_size: int = 5000,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        alerts: bool = True,
    ) -> None:
        self.events = events
        self.read_models = read_models
        self.name = name
        self.batch_size = batch_size
        self.clock = clock
        self.alerts = alerts

    def step(self) -> int:
        """Fold the next batch; how many events it held (0: caught up)."""
        cursor = self.read_models.checkpoint(self.name)
        stored = self.events.read(cursor, self.batch_size)
        if not stored:
            metrics.caught_up()
            return 0
        started = time.perf_counter()
        engine = self._engine({event.device_id for event in stored}) if self.alerts else None
        # Folds are loaded afresh each batch: a replay may have swapped the tables.
        folder = Folder(self.read_models.projections, self.read_models.registry, engine)
        update = folder.fold(stored)
        also = None
        if engine is not None:
            self._append_alert_events(engine.decisions)
            decisions = engine.decisions

            def also(connection: Connection) -> None:
                alert_store.save_decisions(connection, decisions)

        self.read_models.commit(update, self.name, stored[-1].cursor, also)
        metrics.BATCH_SECONDS.observe(time.perf_counter() - started)
        metrics.batch_committed(len(stored), stored[-1].received_at, stored[-1].cursor)
        return len(stored)

    def tick(self) -> None:
        """Clock-driven rules (silence during a session, gaps past their grace) and the
        store's integrity refusals (seq conflicts, chain breaks)."""
        if not self.alerts:
            return
        now = self.clock()
        quiet = self.read_models.devices_to_watch()
        letters_from = self.read_models.checkpoint(_DEAD_LETTERS).position
        new_letters = self.events.dead_letters(after_id=letters_from, limit=1000)
        last_letter = new_letters[-1].id if new_letters else letters_from
        letters = [
            letter
            for letter in new_letters
            if letter.reason == "integrity" and letter.device_id and letter.seq
        ]
        devices = {*quiet, *(str(letter.device_id) for letter in letters)}
        if not devices and last_letter == letters_from:
            return
        engine = self._engine(devices)
        registry = self.read_models.registry(devices)

        def clinic(device_id: str) -> str | None:
            return registry.get(device_id, RegistryEntry(device_id)).clinic_id

        for device_id, projection in self.read_models.projections(quiet).items():
            engine.tick(projection, now, self._last_heard(projection), clinic(device_id))
        for letter in letters:
            device_id = str(letter.device_id)
            engine.refused(device_id, int(letter.seq or 0), letter.detail, letter.received_at,
                           clinic(device_id))  # fmt: skip
        decisions = engine.decisions
        self._append_alert_events(decisions)
        with self.read_models.engine.begin() as connection:
            alert_store.save_decisions(connection, decisions)
            save_checkpoint(connection, _DEAD_LETTERS, Cursor(0, last_letter))
        for letter in new_letters:
            metrics.DEAD_LETTERS_SEEN.labels(letter.reason).inc()

    def _last_heard(self, projection: DeviceProjection) -> datetime | None:
        heard = [projection.last_received_at]
        beats = self.events.latest_heartbeats(projection.device_id, 1)
        if beats:
            heard.append(beats[0].sampled_at)
        return max((moment for moment in heard if moment is not None), default=None)

    def run(self, stop: threading.Event, idle_wait_s: float = 1.0) -> None:
        next_tick = 0.0
        while not stop.is_set():
            folded = self.step()
            if time.monotonic() >= next_tick:
                self.tick()
                next_tick = time.monotonic() + _TICK_EVERY_S
            if folded == 0:
                self.events.wait_for_appends(idle_wait_s)

    def _engine(self, device_ids: Iterable[str]) -> AlertEngine:
        with self.read_models.engine.connect() as connection:
            book = alert_store.load_book(connection, device_ids)
            policies = alert_store.load_policies(connection)
        return AlertEngine(book, alert_store.PolicyLookup(policies))

    def _append_alert_events(self, decisions: AlertDecisions) -> None:
        if decisions.raised:
            appended = self.events.append(decisions.raised).appended
            metrics.ALERT_EVENTS.labels("alert.raised").inc(appended)
        for resolution in decisions.resolved:
            resolved = self.events.append_next(
                alert_stream(resolution.alert_id), partial(_resolution_after, resolution)
            )
            if resolved is not None:
                metrics.ALERT_EVENTS.labels("alert.resolved").inc()


def _resolution_after(resolution: Resolution, head: StoredEvent | None) -> SealedEvent | None:
    if head is None or head.type == "alert.resolved":
        return None  # resolved already (by someone, or before a crash)
    return alert_events.resolved(
        resolution.alert_id, resolution.device_id, head.seq + 1, head.hash,
        max(resolution.at, head.occurred_at), resolution.note,
    )  # fmt: skip
