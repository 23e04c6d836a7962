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
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from functools import partial
from typing import Final

import sqlalchemy.exc
from sqlalchemy import Connection

from schemas import SealedEvent
from schemas.streams import alert_stream
from services.alerts import events as alert_events
from services.alerts import store as alert_store
from services.alerts.engine import AlertDecisions, AlertEngine, Resolution
from services.eventstore import (
    Cursor,
    EventStore,
    StoredEvent,
    StoreUnavailableError,
    save_checkpoint,
)
from services.projections.custody import Custody
from services.projections.device import DeviceProjection
from services.projections.facts import implausible_device_time
from services.projections.read_store import ReadModelStore, RegistryEntry
from services.projector import metrics
from services.projector.folder import Folder
from services.projector.refusals import (
    append_incident_updates,
    judge_refusals,
    refusals_by_device,
)
from transport import Backoff

log = logging.getLogger(__name__)

DATABASE_AWAY: Final = (
    StoreUnavailableError,
    sqlalchemy.exc.OperationalError,  # the connection broke, or none could be made
    sqlalchemy.exc.InterfaceError,
    sqlalchemy.exc.InternalError,  # a write on a node that has just become a standby
)
"""Failures that end when the database (or its new primary) is back; anything else,
such as a value refused, is a fault that retrying would only repeat."""
PROJECTOR: Final = "projector"
"""The live projector's checkpoint name."""
_TICK_EVERY_S: Final = 1.0
_DEAD_LETTERS: Final = "alert-engine-dead-letters"
"""Checkpoint (its position is a dead-letter id) of the integrity refusals judged."""


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
        folder = Folder(
            self.read_models.projections, self.read_models.registry, engine,
            load_custody=self.read_models.custody,
        )  # fmt: skip
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
        store's integrity refusals (seq conflicts, chain breaks, runs that fail chain
        custody), each device's refusals joining its one open incident."""
        if not self.alerts:
            return
        now = self.clock()
        quiet = self.read_models.devices_to_watch()
        letters_from = self.read_models.checkpoint(_DEAD_LETTERS).position
        new_letters = self.events.dead_letters(after_id=letters_from, limit=1000)
        last_letter = new_letters[-1].id if new_letters else letters_from
        refused = refusals_by_device(new_letters)
        devices = {*quiet, *refused}
        if not devices and last_letter == letters_from:
            return
        engine = self._engine(devices)
        registry = self.read_models.registry(devices)

        def clinic(device_id: str) -> str | None:
            return registry.get(device_id, RegistryEntry(device_id)).clinic_id

        custody = self.read_models.custody(quiet)
        for device_id, projection in self.read_models.projections(quiet).items():
            held = custody.get(device_id, Custody(device_id))
            engine.tick(
                projection, now, self._last_heard(projection, now),
                _quiet_owner(projection, held, clinic(device_id)),
            )  # fmt: skip
        judge_refusals(self.events, engine, refused, clinic)
        decisions = engine.decisions
        self._append_alert_events(decisions)
        append_incident_updates(self.events, engine)
        with self.read_models.engine.begin() as connection:
            alert_store.save_decisions(connection, decisions)
            save_checkpoint(connection, _DEAD_LETTERS, Cursor(0, last_letter))
        for letter in new_letters:
            metrics.DEAD_LETTERS_SEEN.labels(letter.reason).inc()

    def _last_heard(self, projection: DeviceProjection, now: datetime) -> datetime | None:
        heard = [projection.last_received_at]
        beats = self.events.latest_heartbeats(projection.device_id, 1)
        # A heartbeat's time is the device's clock: one that is implausible is no sign
        # of life, and one a little ahead cannot be later than now.
        if beats and not implausible_device_time(beats[0].sampled_at, now):
            heard.append(min(beats[0].sampled_at, now))
        return max((moment for moment in heard if moment is not None), default=None)

    def run(self, stop: threading.Event, idle_wait_s: float = 1.0) -> None:
        """Fold until ``stop`` is set, waiting out a database that is away (a failover,
        a restart): every batch commits whole with its checkpoint, so after an error the
        next step starts again from the checkpoint the database really holds."""
        next_tick = 0.0
        backoff = Backoff(base_s=0.2, cap_s=2.0)
        while not stop.is_set():
            try:
                folded = self.step()
                if time.monotonic() >= next_tick:
                    self.tick()
                    next_tick = time.monotonic() + _TICK_EVERY_S
                if folded == 0:
                    self.events.wait_for_appends(idle_wait_s)
            except DATABASE_AWAY as error:
                delay = backoff.next_delay()
                log.warning("the database is unavailable (%s); retrying in %.1f s",
                            _first_line(error), delay)  # fmt: skip
                stop.wait(delay)
                continue
            backoff.reset()

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


def _quiet_owner(projection: DeviceProjection, custody: Custody, holder: str | None) -> str | None:
    """Whose the clock's alerts over a quiet device are: silence during a session
    names the session, so they go to the clinic the session belongs to (the one that
    held the device when it started); otherwise to the holder now."""
    session = projection.open_session
    return holder if session is None else custody.holder_at(session.started_seq)


def _resolution_after(resolution: Resolution, head: StoredEvent | None) -> SealedEvent | None:
    if head is None or head.type == "alert.resolved":
        return None  # resolved already (by someone, or before a crash)
    return alert_events.resolved(
        resolution.alert_id, resolution.device_id, head.seq + 1, head.hash,
        max(resolution.at, head.occurred_at), resolution.note,
    )  # fmt: skip


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
