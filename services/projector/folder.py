"""Folding a batch of stored events into read-model rows: device events into their
device's fold, registry events into the registry and the device's custody, alert
events into ``read_alerts`` and, for incidents over refused events, into their
device's fold too (its ``integrity`` status).  The live projector and ``coreline
replay`` share it, so both build the same read models from the same events.

Whose is what: a session's clinic, an alert's and a cartridge install's are decided
by custody (``services.projections.custody.event_owner``) from the event's seq, once,
when it is folded, never by who holds the device when a row is written later."""

from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Final

import orjson

from schemas.streams import is_change_stream, is_device_stream
from services.alerts.engine import AlertEngine
from services.alerts.incidents import is_refusal_incident
from services.eventstore import EventRecord, StoredEvent
from services.projections.changes import Applied, SessionChanged, SessionClosed
from services.projections.custody import Custody, assign, event_owner
from services.projections.device import DeviceProjection
from services.projections.facts import Fact, event_time, fact_from_body, parse_timestamp
from services.projections.fleet import iso_week
from services.projections.read_store import (
    ReadModelUpdate,
    RegistryEntry,
    snapshot,
    stored_document,
)
from services.projections.session import SessionAudit
from services.projector.alert_rows import AlertEventRow, AlertRows

Stored = StoredEvent | EventRecord
"""What a fold reads: a stored event, or the lean record a replay fetches."""

_REGISTRY_PREFIX: Final = "registry:"
_ALERT_PREFIX: Final = "alert:"


def _no_custody(_device_ids: Iterable[str]) -> dict[str, Custody]:
    return {}


class Folder:
    """Folds batches of stored events into read-model rows, holding the device folds
    and registry entries it has touched (loaded through ``load`` when first needed)."""

    def __init__(
        self,
        load_projections: Callable[[Iterable[str]], dict[str, DeviceProjection]],
        load_registry: Callable[[Iterable[str]], dict[str, RegistryEntry]],
        engine: AlertEngine | None = None,
        *,
        load_custody: Callable[[Iterable[str]], dict[str, Custody]] = _no_custody,
    ) -> None:
        self._load_projections = load_projections
        self._load_registry = load_registry
        self._load_custody = load_custody
        self.engine = engine
        self.projections: dict[str, DeviceProjection] = {}
        self.registry: dict[str, RegistryEntry] = {}
        self.custody: dict[str, Custody] = {}
        self.alert_rows = AlertRows()

    def load_with(
        self,
        load_projections: Callable[[Iterable[str]], dict[str, DeviceProjection]],
        load_registry: Callable[[Iterable[str]], dict[str, RegistryEntry]],
        load_custody: Callable[[Iterable[str]], dict[str, Custody]],
    ) -> None:
        """Load what this folder does not hold yet through these from now on (each of
        a projector's batches reads through the connection it commits with)."""
        self._load_projections = load_projections
        self._load_registry = load_registry
        self._load_custody = load_custody

    def fold(
        self, stored: Sequence[Stored], *, device_rows: bool = True, open_sessions: bool = True
    ) -> ReadModelUpdate:
        """Fold one batch; the rows of every device (unless ``device_rows`` is off: a
        replay writes each device once, at the end), session and registry entry it
        changed.  Without ``open_sessions`` a session's row comes only once it has
        ended (a replay writes the ones still open at the end, ``open_session_rows``)."""
        self._load_for(stored)
        update = ReadModelUpdate()
        touched: set[str] = set()
        sessions: dict[str, SessionAudit] = {}
        changed_sessions: dict[str, set[str]] = {}
        registry_changed: set[str] = set()
        custody_changed: set[str] = set()
        for event in stored:
            if is_device_stream(event.stream_id):
                self._fold_device_event(event, update, changed_sessions)
                touched.add(event.device_id)
            elif event.stream_id.startswith(_REGISTRY_PREFIX) and self._fold_registry_event(
                event, custody_changed
            ):
                registry_changed.add(event.device_id)
                touched.add(event.device_id)
            elif event.stream_id.startswith(_ALERT_PREFIX) and self._fold_alert_event(
                event, update
            ):
                touched.add(event.device_id)
        for device_id in touched:
            projection = self._projection(device_id)
            # Audits once per session per batch: ended ones as the fold lets them go,
            # open ones as they stand.
            for audit in projection.forget_ended_sessions():
                sessions[audit.session_id] = audit
            for session_id in changed_sessions.get(device_id, ()) if open_sessions else ():
                open_audit = projection.session_audit(session_id)
                if open_audit is not None:
                    sessions[session_id] = open_audit
            if device_rows:
                update.devices.append(self.device_row(projection))
        update.sessions = [self._session_row(audit) for audit in sessions.values()]
        update.registry = [self.registry[device_id] for device_id in registry_changed]
        update.custody = [self.custody[device_id] for device_id in custody_changed]
        return update

    def _fold_device_event(
        self, event: Stored, update: ReadModelUpdate, changed_sessions: dict[str, set[str]]
    ) -> None:
        device_id = event.device_id
        projection = self.projections[device_id]
        fact = fact_from_body(event.body, event.hash, event.received_at)
        changes = projection.apply(fact)
        engine = self.engine
        if engine is not None:
            # The alerts a fact raises are its owner's: a punch of a session begun
            # before a reassignment raises them for the session's clinic.
            engine.after_fold(projection, fact, changes, self._owner(projection, fact))
        for change in changes:
            # ``Applied`` first, one for every fact folded; this runs for every change
            # of every event.
            if isinstance(change, Applied):
                if change.fact.type == "cartridge.installed":
                    clinic = self._owner(projection, change.fact) or ""
                    key = (clinic, iso_week(event_time(change.fact)))
                    installed = update.cartridges_installed
                    installed[key] = installed.get(key, 0) + 1
            elif isinstance(change, (SessionChanged, SessionClosed)):
                sessions = changed_sessions.get(device_id)
                if sessions is None:
                    sessions = changed_sessions[device_id] = set()
                sessions.add(change.session_id)

    def _owner(self, projection: DeviceProjection, fact: Fact) -> str | None:
        """The clinic ``fact`` belongs to (``custody.event_owner``): a session's events
        its clinic's, as of the seq that started it."""
        custody = self.custody[projection.device_id]
        intervals = custody.intervals
        if not intervals:
            return None  # no clinic's before the first assignment, whatever the session
        if len(intervals) == 1 and intervals[0].to_seq is None and intervals[0].from_seq <= 1:
            # One holder of every seq (a device never reassigned, the common case): every
            # session's clinic too, so the session need not be looked up for each event.
            return intervals[0].clinic_id
        named = fact.data.get("session_id") if isinstance(fact.data, dict) else None
        session_id = named if isinstance(named, str) else None  # an altered row: by seq
        tally = None if session_id is None else projection.sessions.get(session_id)
        known = {} if tally is None else {tally.session_id: custody.holder_at(tally.started_seq)}
        return event_owner(custody, fact.seq, session_id, known)

    def _fold_registry_event(self, event: Stored, custody_changed: set[str]) -> bool:
        body = orjson.loads(event.body)
        data, device_id = body["data"], event.device_id
        entry = self._entry(device_id)
        if event.type == "device.registered":
            self.registry[device_id] = replace(entry, model=data["model"], registered=True)
        elif event.type == "device.enrolled":
            self.registry[device_id] = replace(entry, serial=data["serial"])
        elif event.type == "device.assigned":
            self.registry[device_id] = replace(entry, clinic_id=data["clinic_id"])
            custody = self._custody(device_id)
            # In the global order every event of the device before this assignment has
            # been given to its fold already (see ``services.projections.custody``).
            moved = assign(
                custody, data["clinic_id"], registry_seq=event.seq,
                device_seen_through=self._projection(device_id).seen_through,
                at=event.received_at,
            )  # fmt: skip
            if moved is not custody:
                self.custody[device_id] = moved
                custody_changed.add(device_id)
        elif event.type == "device.serviced":
            at = parse_timestamp(body["occurred_at"])
            projection = self._projection(device_id)
            projection.record_service(at, data.get("actuations_at_service"))
            if self.engine is not None:
                self.engine.reevaluate(projection, event.received_at, entry.clinic_id)
        else:
            return False
        return True

    def _fold_alert_event(self, event: Stored, update: ReadModelUpdate) -> bool:
        """Alert aggregates into ``read_alerts`` and their history (``AlertRows``), and
        incidents over refused events into their device's fold; ``True`` when the
        device's open incidents changed."""
        body = orjson.loads(event.body)
        data = body["data"]
        alert_id = data["alert_id"]
        self.alert_rows.fold(
            AlertEventRow(
                body["event_id"], alert_id, event.device_id, event.seq, event.type,
                parse_timestamp(body["occurred_at"]), data,
            ),
            update,
        )  # fmt: skip
        if event.type == "alert.raised" and is_refusal_incident(data["rule"], data["subject"]):
            return self._projection(event.device_id).integrity_incident_opened(alert_id)
        if event.type == "alert.resolved":
            return self._projection(event.device_id).integrity_incident_resolved(alert_id)
        return False

    def _load_for(self, stored: Sequence[Stored]) -> None:
        # Change streams (policies, identities) concern no device: their events' device
        # id is the platform's own, which must not become a device row.
        # Each stream judged once: a batch holds a few hundred streams and thousands
        # of events.
        streams = {(event.stream_id, event.device_id) for event in stored}
        devices = {device_id for stream_id, device_id in streams if not is_change_stream(stream_id)}
        wanted = devices - self.projections.keys()
        if wanted:
            found = self._load_projections(wanted)
            for device_id in wanted:
                self.projections[device_id] = found.get(device_id) or DeviceProjection(device_id)
        unknown = devices - self.registry.keys()
        if unknown:
            found_entries = self._load_registry(unknown)
            for device_id in unknown:
                self.registry[device_id] = found_entries.get(device_id) or RegistryEntry(device_id)
        unheld = devices - self.custody.keys()
        if unheld:
            found_custody = self._load_custody(unheld)
            for device_id in unheld:
                self.custody[device_id] = found_custody.get(device_id) or Custody(device_id)

    def _projection(self, device_id: str) -> DeviceProjection:
        return self.projections[device_id]

    def _entry(self, device_id: str) -> RegistryEntry:
        return self.registry[device_id]

    def _custody(self, device_id: str) -> Custody:
        return self.custody[device_id]

    def device_row(self, projection: DeviceProjection) -> dict[str, object]:
        summary = projection.summary()
        return {
            "device_id": projection.device_id,
            "clinic_id": self._entry(projection.device_id).clinic_id,
            "status": summary.status.value,
            "firmware_version": summary.firmware_version,
            "last_seen": summary.last_seen,
            "summary": stored_document(summary),
            "snapshot": snapshot(projection),
            "open_session_id": summary.open_session_id,
            "waiting_for_seq": summary.waiting_for_seq,
            "updated_at": datetime.now(UTC),
        }

    def open_session_rows(self) -> list[dict[str, object]]:
        """The rows of every session held open by the folds, as they stand."""
        return [
            self._session_row(audit)
            for projection in self.projections.values()
            for audit in projection.session_audits()
        ]

    def _session_row(self, audit: SessionAudit) -> dict[str, object]:
        return {
            "session_id": audit.session_id,
            "device_id": audit.device_id,
            # Fixed at its start: the session stays with that clinic wherever it ends.
            "clinic_id": self._custody(audit.device_id).holder_at(audit.started_seq),
            "treatment_area": audit.treatment_area,
            "area_cm2": audit.area_cm2,
            "started_at": audit.started_at,
            "ended_at": audit.ended_at,
            "cores_counted": audit.cores_counted,
            "cores_reported": audit.cores_reported,
            "reconciled": audit.reconciled,
            "coverage_pct": audit.coverage_pct,
            "chain_status": audit.chain_status.value,
            "audit": stored_document(audit),
            "cartridge_id": audit.cartridge_ids[0] if audit.cartridge_ids else None,
            "lot": audit.lot,
            "ended_hash": audit.ended_hash,
            "cartridge_ids": audit.cartridges_cell,
            "core_diameters_mm": audit.core_diameters_cell,
        }
