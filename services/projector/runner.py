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
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Final, TypeVar

import orjson
import sqlalchemy.exc
from sqlalchemy import Connection

from schemas import Heartbeat, SealedEvent
from schemas.streams import alert_stream
from services.alerts import events as alert_events
from services.alerts import ladder
from services.alerts import store as alert_store
from services.alerts.engine import (
    AlertDecisions,
    AlertEngine,
    Escalation,
    Key,
    Resolution,
    kind_of,
)
from services.alerts.policy import DEFAULT_ALERT_POLICY, AlertPolicy
from services.collector import collect_rarely
from services.eventstore import (
    Cursor,
    EventStore,
    NextEvent,
    StoredEvent,
    StoreUnavailableError,
    load_checkpoint,
    save_checkpoint,
)
from services.projections.custody import Custody
from services.projections.device import DeviceProjection
from services.projections.facts import implausible_device_time
from services.projections.read_store import ReadModelStore, RegistryEntry
from services.projections.telemetry_store import TelemetryRollups
from services.projector import metrics
from services.projector.alert_rows import AlertRows
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
_KEEP_FOLDS_UP_TO: Final = 20_000
"""Devices whose folds the projector keeps in memory between batches (a few kB each);
beyond that it loads them from the read tables every batch, as it did always."""
YOUNG_COLLECTION_THRESHOLD: Final = 200_000
"""Allocations between collections of the youngest generation in a projector process."""
_Row = TypeVar("_Row")
_DEAD_LETTERS: Final = "alert-engine-dead-letters"
"""Checkpoint (its position is a dead-letter id) of the integrity refusals judged."""


def tune_collector() -> None:
    """Set the cyclic garbage collector for a projector process; call once, when its
    threads have started.

    With Python's defaults the process walked its whole heap (about 165,000 objects,
    nearly all loaded at start-up) every few seconds under load, 85 to 100 ms of CPU
    each time with the interpreter lock held: every thread stopped, and an alert whose
    batch was folding then waited that much longer (``bench.alerts``).  The folds kept
    between batches and each batch's rows hold no cycles, so reference counting frees
    them; collections can be rare (``services.collector``)."""
    collect_rarely(YOUNG_COLLECTION_THRESHOLD)


class Projector:
    """The live projector: reads after its checkpoint, folds, lets the alert engine
    judge each fold, appends the alert events, commits, repeats.

    A batch's alert events are appended, all in one transaction of the event store,
    before the batch's commit.  A crash in between folds the batch again after the
    restart, and the engine decides the very same alert events (they are built from
    the events, not the clock), which the store then recognises as duplicates (an
    escalation or resolution already at the stream's head is not built again).
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
        self._kept: _Kept | None = None
        """The folds and the alert book as of this projector's last commit."""
        self._policies: tuple[alert_store.PoliciesVersion, alert_store.PolicyLookup] | None = None
        """The clinic policies validated last, with the version of the table they are."""
        # Heartbeat rollups ride on the same loop: each look refolds only the hours
        # that gained samples (``services.projections.telemetry_store``).
        self.telemetry = TelemetryRollups(read_models.engine, read_models.backend)

    def step(self) -> int:
        """Fold the next batch; how many events it held (0: caught up).

        One connection of the read models' pool serves the whole batch: the checkpoint
        read, the alert book and the policies, the saved folds of devices not held yet,
        then the rows, the decisions and the checkpoint (sent together, on PostgreSQL)
        committed together.  Each pool checkout is a ping and each round trip a wait
        for the interpreter lock behind the process's other threads, and a probe's
        latency is a whole batch of them."""
        with self.read_models.engine.connect() as connection:
            cursor = load_checkpoint(connection, self.name)
            stored = self.events.read(cursor, self.batch_size)
            if not stored:
                metrics.caught_up()
                return 0
            started = time.perf_counter()
            self._fold_and_commit(connection, cursor, stored)
        metrics.BATCH_SECONDS.observe(time.perf_counter() - started)
        metrics.batch_committed(len(stored), stored[-1].received_at, stored[-1].cursor)
        return len(stored)

    def _fold_and_commit(
        self, connection: Connection, cursor: Cursor, stored: list[StoredEvent]
    ) -> None:
        """Fold ``stored`` (read after ``cursor``), append the alert events, then
        commit the rows, the alert decisions and the checkpoint in ``connection``'s
        transaction; the folds and the book are kept once that commit succeeded."""
        kept = self._kept if self._kept is not None and self._kept.cursor == cursor else None
        self._kept = None  # folded past the commit until that commit succeeds
        book = {} if kept is None else kept.book
        devices = {event.device_id for event in stored}
        engine = self._engine(devices, book, connection) if self.alerts else None
        folder = self._folder(kept, connection)
        folder.engine = engine
        update = folder.fold(stored)
        if engine is not None:
            self._append_alert_events(engine.decisions)
        with self.read_models.pipelined(connection):
            self.read_models.write(connection, update)
            if engine is not None:
                alert_store.save_decisions(connection, engine.decisions)
            save_checkpoint(connection, self.name, stored[-1].cursor)
        connection.commit()
        if len(folder.projections) <= _KEEP_FOLDS_UP_TO:
            if engine is not None:
                book.update(engine.book)  # the devices' conditions as just committed
            self._kept = _Kept(stored[-1].cursor, folder, book)

    def _folder(self, kept: "_Kept | None", connection: Connection) -> Folder:
        """The folds this projector committed last, while the checkpoint is still that
        commit's (``kept``): then they are exactly what the read tables hold, and
        loading (and unpickling) each device's snapshot again every batch is wasted.
        Any other checkpoint means someone else moved it (a replay swapped the tables
        in, another projector folded): the folds are loaded afresh from the tables.
        The alert rows' memory starts afresh every batch either way, as the live
        projector's always did (``services.projector.alert_rows``).  Devices not held
        yet are loaded through the batch's own ``connection``: under load most batches
        bring some, and a checkout each (three for their folds, registry entries and
        custody) was three more transactions a batch."""
        read_models = self.read_models
        projections = partial(read_models.projections, connection=connection)
        registry = partial(read_models.registry, connection=connection)
        custody = partial(read_models.custody, connection=connection)
        if kept is None:
            return Folder(projections, registry, load_custody=custody)
        kept.folder.alert_rows = AlertRows()
        kept.folder.load_with(projections, registry, custody)
        return kept.folder

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
        current = self._current()
        self._kept = None  # judged past the commit until the book is saved
        book = {} if current is None else current.book
        with self.read_models.engine.connect() as connection:
            engine = self._engine(devices, book, connection)
        kept = current.folder if current is not None else self._fresh_folder()
        registry = _kept_or_loaded(devices, kept.registry, self.read_models.registry)

        def clinic(device_id: str) -> str | None:
            return registry.get(device_id, RegistryEntry(device_id)).clinic_id

        custody = _kept_or_loaded(quiet, kept.custody, self.read_models.custody)
        projections = _kept_or_loaded(quiet, kept.projections, self.read_models.projections)
        looked_at: list[tuple[DeviceProjection, str | None]] = []
        unheard: list[str] = []
        for device_id, projection in projections.items():
            owner = _quiet_owner(projection, custody.get(device_id, Custody(device_id)),
                                 clinic(device_id))  # fmt: skip
            offline_after = timedelta(seconds=self._policy_of(owner).offline_after_s)
            if _timed_may_change(projection, engine.book.get(device_id, {}), now, offline_after):
                looked_at.append((projection, owner))
                if _may_be_silent(projection, now, offline_after):
                    unheard.append(device_id)
        beats = self.events.newest_heartbeats(unheard) if unheard else {}
        for projection, owner in looked_at:
            heard = _last_heard(projection, beats.get(projection.device_id), now)
            engine.tick(projection, now, heard, owner)
        judge_refusals(self.events, engine, refused, clinic)
        decisions = engine.decisions
        self._append_alert_events(decisions)
        append_incident_updates(self.events, engine)
        if decisions.added or decisions.removed or last_letter != letters_from:
            with self.read_models.engine.begin() as connection:
                alert_store.save_decisions(connection, decisions)
                save_checkpoint(connection, _DEAD_LETTERS, Cursor(0, last_letter))
        if current is not None:
            book.update(engine.book)
            self._kept = current
        for letter in new_letters:
            metrics.DEAD_LETTERS_SEEN.labels(letter.reason).inc()

    def _current(self) -> "_Kept | None":
        """What this projector keeps, while the checkpoint is still that of its last
        commit (the folds are then what the read tables hold, and the book what
        ``alert_conditions`` holds, so the clock needs neither loaded again)."""
        kept = self._kept
        if kept is not None and kept.cursor == self.read_models.checkpoint(self.name):
            return kept
        return None

    def _policy_of(self, clinic_id: str | None) -> AlertPolicy:
        """The policy the engine applies to ``clinic_id``: the lookup ``_engine`` made
        for this batch or tick, validated against the table's version."""
        return DEFAULT_ALERT_POLICY if self._policies is None else self._policies[1](clinic_id)

    def _fresh_folder(self) -> Folder:
        return Folder(self.read_models.projections, self.read_models.registry)

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
                    self.telemetry.tick(self.clock())
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

    def _engine(
        self, device_ids: Iterable[str], kept: dict[str, dict[Key, str]], connection: Connection
    ) -> AlertEngine:
        """An engine over the devices' book, its entries ``kept`` (this projector's, as
        it committed them last: only it writes ``alert_conditions``) or loaded, and the
        clinic policies, validated again only when the table's version moved.  The
        engine changes the kept entries in place: the caller keeps them only once what
        it decided is committed."""
        wanted = list(dict.fromkeys(device_ids))
        book = {device_id: kept[device_id] for device_id in wanted if device_id in kept}
        missing = [device_id for device_id in wanted if device_id not in book]
        if missing:
            book.update(alert_store.load_book(connection, missing))
        # The version first: a policy set between the two reads moves the next
        # batch's version, so the policies are validated again then.
        version = alert_store.policies_version(connection)
        if self._policies is None or self._policies[0] != version:
            lookup = alert_store.PolicyLookup(alert_store.load_policies(connection))
            self._policies = (version, lookup)
        return AlertEngine(book, self._policies[1])

    def _append_alert_events(self, decisions: AlertDecisions) -> None:
        """The raised alerts, then the escalations and resolutions each after its
        stream's newest event, in one transaction: one commit a batch, not one each
        (each commit is a wait for the disk that a probe's alert sits behind)."""
        nexts: list[tuple[str, NextEvent]] = [
            *((alert_stream(escalation.alert_id), partial(_escalation_after, escalation))
              for escalation in decisions.escalated),
            *((alert_stream(resolution.alert_id), partial(_resolution_after, resolution))
              for resolution in decisions.resolved),
        ]  # fmt: skip
        if not decisions.raised and not nexts:
            return
        raised, built = self.events.append_with_next(decisions.raised, nexts)
        metrics.ALERT_EVENTS.labels("alert.raised").inc(raised.appended)
        escalations = len(decisions.escalated)
        for kind, appended in (("alert.escalated", built[:escalations]),
                               ("alert.resolved", built[escalations:])):  # fmt: skip
            metrics.ALERT_EVENTS.labels(kind).inc(sum(event is not None for event in appended))


@dataclass(slots=True)
class _Kept:
    """What the projector keeps between batches while the checkpoint is ``cursor``,
    its own last commit's: the folds, and the alert book of the devices it has judged
    (``alert_conditions`` as of that commit)."""

    cursor: Cursor
    folder: Folder
    book: dict[str, dict[Key, str]]


def _kept_or_loaded(
    device_ids: Iterable[str],
    kept: Mapping[str, _Row],
    load: Callable[[Iterable[str]], dict[str, _Row]],
) -> dict[str, _Row]:
    """The kept rows of these devices, the others loaded (absent where none is stored)."""
    wanted = list(dict.fromkeys(device_ids))
    found = {device_id: kept[device_id] for device_id in wanted if device_id in kept}
    missing = [device_id for device_id in wanted if device_id not in found]
    if missing:
        found.update(load(missing))
    return found


def _timed_may_change(
    projection: DeviceProjection,
    conditions: Mapping[Key, str],
    now: datetime,
    offline_after: timedelta,
) -> bool:
    """Whether the clock's rules (``services.alerts.conditions.timed``) could hold a
    condition for this device or end one it holds.  A device waiting for no event, with
    no clock-driven alert open, out of a session or in one with an event received within
    its offline time (whatever its heartbeats say, it was heard since) holds none and
    ends none: ``AlertEngine.tick`` would decide nothing.  Most devices in a session
    under load are such, and each looked at costs the tick, which holds up the batches
    folding behind it (``bench.alerts``)."""
    if projection.waiting_for_seq is not None:
        return True
    if any(kind_of(key) == "timed" for key in conditions):
        return True
    return _may_be_silent(projection, now, offline_after)


def _may_be_silent(projection: DeviceProjection, now: datetime, offline_after: timedelta) -> bool:
    """Whether silence during a session could hold as of ``now``: the device is in one,
    and its last event arrived at least its offline time ago (or never).  Only then do
    its heartbeats, which can only make it heard later, change what the clock decides."""
    if projection.open_session is None:
        return False
    received = projection.last_received_at
    return received is None or now >= received + offline_after


def _last_heard(
    projection: DeviceProjection, beat: Heartbeat | None, now: datetime
) -> datetime | None:
    heard = [projection.last_received_at]
    # A heartbeat's time is the device's clock: one that is implausible is no sign
    # of life, and one a little ahead cannot be later than now.
    if beat is not None and not implausible_device_time(beat.sampled_at, now):
        heard.append(min(beat.sampled_at, now))
    return max((moment for moment in heard if moment is not None), default=None)


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


def _escalation_after(escalation: Escalation, head: StoredEvent | None) -> SealedEvent | None:
    """The escalation after the stream's newest event, whatever state a person left
    the alert in: a higher rung re-opens attention (docs/alerts.md).  Nothing when the
    newest event already reached that rung (appended before a crash)."""
    if head is None:
        return None
    if head.type in ("alert.raised", "alert.escalated"):
        rule = orjson.loads(head.body)["data"]["rule"]
        if ladder.on_ladder(rule) and not ladder.climbs(escalation.condition.rule.value, [rule]):
            return None
    return alert_events.escalated(
        escalation.alert_id, escalation.device_id, escalation.condition,
        seq=head.seq + 1, prev_hash=head.hash, at=max(escalation.at, head.occurred_at),
    )  # fmt: skip


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
