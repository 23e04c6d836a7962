"""``coreline projector``: folds the event store into the read models, batch by
batch, each batch's rows and checkpoint committed together.

Exactly once in effect, whatever happens: the device folds apply each device's
events strictly in seq order and ignore what they have already applied, so a batch
read twice (a crash between commit and the next read cannot happen, but a replay
racing the live projector can) changes nothing the second time.
"""

import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Final

import orjson

from schemas.streams import is_device_stream
from services.eventstore import EventStore, StoredEvent
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

log = logging.getLogger(__name__)

PROJECTOR: Final = "projector"
"""The live projector's checkpoint name."""
_REGISTRY_PREFIX: Final = "registry:"


class Folder:
    """Folds batches of stored events into read-model rows, holding the device folds
    and registry entries it has touched (loaded through ``load`` when first needed)."""

    def __init__(
        self,
        load_projections: Callable[[Iterable[str]], dict[str, DeviceProjection]],
        load_registry: Callable[[Iterable[str]], dict[str, RegistryEntry]],
    ) -> None:
        self._load_projections = load_projections
        self._load_registry = load_registry
        self.projections: dict[str, DeviceProjection] = {}
        self.registry: dict[str, RegistryEntry] = {}

    def fold(self, stored: Sequence[StoredEvent], *, device_rows: bool = True) -> ReadModelUpdate:
        """Fold one batch; the rows of every device (unless ``device_rows`` is off: a
        replay writes each device once, at the end), session and registry entry it
        changed."""
        self._load_for(stored)
        update = ReadModelUpdate()
        touched: set[str] = set()
        sessions: dict[str, SessionAudit] = {}
        registry_changed: set[str] = set()
        for event in stored:
            if is_device_stream(event.stream_id):
                self._fold_device_event(event, update, sessions)
                touched.add(event.device_id)
            elif event.stream_id.startswith(_REGISTRY_PREFIX) and self._fold_registry_event(event):
                registry_changed.add(event.device_id)
                touched.add(event.device_id)
        for device_id in touched:
            projection = self._projection(device_id)
            for audit in projection.forget_ended_sessions():
                sessions[audit.session_id] = audit
            if device_rows:
                update.devices.append(self.device_row(projection))
        update.sessions = [self._session_row(audit) for audit in sessions.values()]
        update.registry = [self.registry[device_id] for device_id in registry_changed]
        return update

    def _fold_device_event(
        self, event: StoredEvent, update: ReadModelUpdate, sessions: dict[str, SessionAudit]
    ) -> None:
        projection = self._projection(event.device_id)
        fact = fact_from_body(event.body, event.hash, event.received_at)
        for change in projection.apply(fact):
            if isinstance(change, SessionChanged | SessionClosed):
                audit = projection.session_audit(change.session_id)
                if audit is not None:
                    sessions[change.session_id] = audit
            elif isinstance(change, Applied) and change.fact.type == "cartridge.installed":
                clinic = self._entry(event.device_id).clinic_id or ""
                key = (clinic, iso_week(change.fact.occurred_at))
                update.cartridges_installed[key] = update.cartridges_installed.get(key, 0) + 1

    def _fold_registry_event(self, event: StoredEvent) -> bool:
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
            self._projection(device_id).record_service(
                parse_timestamp(body["occurred_at"]), data.get("actuations_at_service")
            )
        else:
            return False
        return True

    def _load_for(self, stored: Sequence[StoredEvent]) -> None:
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


class Projector:
    """The live projector: reads after its checkpoint, folds, commits, repeats."""

    def __init__(
        self,
        events: EventStore,
        read_models: ReadModelStore,
        *,
        name: str = PROJECTOR,
        batch_size: int = 5000,
    ) -> None:
        self.events = events
        self.read_models = read_models
        self.name = name
        self.batch_size = batch_size

    def step(self) -> int:
        """Fold the next batch; how many events it held (0: caught up)."""
        cursor = self.read_models.checkpoint(self.name)
        stored = self.events.read(cursor, self.batch_size)
        if not stored:
            return 0
        # Folds are loaded afresh each batch: a replay may have swapped the tables.
        folder = Folder(self.read_models.projections, self.read_models.registry)
        update = folder.fold(stored)
        self.read_models.commit(update, self.name, stored[-1].cursor)
        return len(stored)

    def run(self, stop: threading.Event, idle_wait_s: float = 1.0) -> None:
        while not stop.is_set():
            if self.step() == 0:
                self.events.wait_for_appends(idle_wait_s)
