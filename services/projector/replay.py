"""``coreline replay``: rebuild every read model from the event store.

The rebuild goes into a fresh set of tables (``read_*_next``) while the live
projector carries on with the live ones; then one transaction puts the fresh
tables in place and moves the projector's checkpoint to where the rebuild ended.
Events appended meanwhile come after that checkpoint, so the projector folds them
next; a batch it was folding during the swap is harmless, because the folds ignore
events they have already applied.
"""

import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy import JSON, Connection, Table, text

from services.eventstore import Backend, Cursor, EventRecord, EventStore, save_checkpoint
from services.eventstore.copy_in import KeyTakenError, copy_in
from services.projections.read_store import ReadModelStore, ReadModelUpdate
from services.projections.tables import read_tables
from services.projections.telemetry_store import rebuild_rollups
from services.projector.folder import Folder
from services.projector.runner import PROJECTOR

_FRESH: Final = "_next"


@dataclass(frozen=True, slots=True)
class ReplayResult:
    events: int
    devices: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0


def replay(
    url: str,
    events: EventStore,
    on_progress: Callable[[int], None] | None = None,
    batch_size: int = 20_000,
    copy_rows: bool = True,
) -> ReplayResult:
    """Rebuild the read models of the database at ``url`` from ``events``; on
    PostgreSQL, session and device rows go by ``COPY`` unless ``copy_rows`` is off
    (``INSERT`` statements, as on SQLite: what ``bench.replay`` compares with)."""
    started = time.perf_counter()
    fresh = ReadModelStore(url, suffix=_FRESH)
    fresh.tables.metadata.drop_all(fresh.engine)  # leftovers of an interrupted replay
    fresh.tables.metadata.create_all(fresh.engine)
    folder = Folder(lambda _ids: {}, lambda _ids: {})  # from nothing, all in memory
    cursor, total = Cursor.START, 0
    rows = _FreshRows(fresh, copy_rows)
    with _Writer(rows) as writer:
        for batch in _prefetched(events, batch_size):
            # Each device row and each open session's row is written once, at the end:
            # every earlier version would only be overwritten.
            writer.write(folder.fold(batch, device_rows=False, open_sessions=False))
            cursor, total = batch[-1].cursor, total + len(batch)
            if on_progress is not None:
                on_progress(len(batch))
    last = ReadModelUpdate(
        devices=[folder.device_row(projection) for projection in folder.projections.values()],
        sessions=folder.open_session_rows(),
    )
    with fresh.engine.begin() as connection:
        rows.write(connection, last)
        _swap_in(connection, fresh, cursor)
    # Heartbeat rollups are rebuilt in place from the raw samples (their own table,
    # idempotent upserts): the hourly ones outlive raw retention, so no fresh set.
    rebuild_rollups(fresh.engine, fresh.backend, datetime.now(UTC))
    fresh.close()
    return ReplayResult(total, len(folder.projections), time.perf_counter() - started)


class _FreshRows:
    """Writes folded rows into the fresh tables.  On PostgreSQL the session and device
    rows go by ``COPY`` (an eighth of the server's CPU of an ``INSERT … ON CONFLICT``
    a row, under half the client's; BENCHMARKS.md, Replay): in fresh tables every such
    row is new, as each session's row is written once, at its end or at the replay's,
    and each device's at the end.  The exception is a session id met again (started
    again after it ended, or named by two devices): then the ``COPY`` of that batch's
    rows is undone to a savepoint and they are upserted as on SQLite, in order, so the
    last row wins as it does live."""

    def __init__(self, store: ReadModelStore, copy_rows: bool) -> None:
        self.store = store
        self._copies = copy_rows and store.backend is Backend.POSTGRES

    def write(self, connection: Connection, update: ReadModelUpdate) -> None:
        if self._copies:
            tables, rest = self.store.tables, replace(update)
            if update.sessions and _copied(connection, tables.sessions, update.sessions):
                rest.sessions = []
            if update.devices and _copied(connection, tables.devices, update.devices):
                rest.devices = []
            update = rest
        self.store.write(connection, update)


def _copied(connection: Connection, table: Table, rows: list[dict[str, Any]]) -> bool:
    """Whether ``rows`` went into ``table`` by ``COPY``; if not (a key was taken),
    nothing of them was written."""
    # A generated column is the database's to write.
    columns = [column.name for column in table.columns if column.computed is None]
    documents = {column.name for column in table.columns if isinstance(column.type, JSON)}
    try:
        with connection.begin_nested():
            copy_in(connection, table.name, columns, rows, documents)
    except KeyTakenError:
        return False
    return True


class _Writer:
    """Writes the folded batches in order on a thread of its own, so the database's
    time and the driver's waits overlap the next batch's fold; a failure to write is
    raised in the folding thread, at its next ``write`` or at the end."""

    def __init__(self, rows: _FreshRows) -> None:
        self._rows = rows
        self._updates: queue.Queue[ReadModelUpdate | None] = queue.Queue(maxsize=2)
        self._failed: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="replay-writer", daemon=True)

    def __enter__(self) -> "_Writer":
        self._thread.start()
        return self

    def write(self, update: ReadModelUpdate) -> None:
        self._raise_failure()
        self._updates.put(update)

    def __exit__(self, *exc_info: object) -> None:
        self._updates.put(None)
        self._thread.join()
        if exc_info[0] is None:
            self._raise_failure()

    def _raise_failure(self) -> None:
        if self._failed is not None:
            raise self._failed

    def _run(self) -> None:
        while (update := self._updates.get()) is not None:
            if self._failed is not None:
                continue  # drained so that the folding thread never blocks on a full queue
            try:
                with self._rows.store.engine.begin() as connection:
                    self._rows.write(connection, update)
            except BaseException as error:  # noqa: BLE001 - raised in the folding thread
                self._failed = error


def _prefetched(events: EventStore, batch_size: int) -> Iterator[list[EventRecord]]:
    """Batches in order, the next one read while the last is folded: the database's
    time overlaps the fold's (the reading thread waits with the GIL released)."""
    ready: queue.Queue[list[EventRecord] | BaseException] = queue.Queue(maxsize=2)

    def read_all() -> None:
        try:
            cursor = Cursor.START
            while batch := events.read_records(cursor, batch_size):
                ready.put(batch)
                cursor = batch[-1].cursor
            ready.put([])
        except BaseException as error:  # noqa: BLE001 - handed to the folding thread, raised there
            ready.put(error)

    reader = threading.Thread(target=read_all, name="replay-reader", daemon=True)
    reader.start()
    while True:
        item = ready.get()
        if isinstance(item, BaseException):
            raise item
        if not item:
            break
        yield item
    reader.join()


def _swap_in(connection: Connection, fresh: ReadModelStore, cursor: Cursor) -> None:
    live = read_tables()
    for new, old in zip(fresh.tables[1:], live[1:], strict=True):
        connection.execute(text(f'DROP TABLE IF EXISTS "{old.name}"'))
        connection.execute(text(f'ALTER TABLE "{new.name}" RENAME TO "{old.name}"'))
        if fresh.backend is Backend.POSTGRES:
            # Index names outlive a table rename; give them the live names back so the
            # next replay can create its fresh set again.
            for name in [f"{new.name}_pkey", *(str(index.name) for index in new.indexes)]:
                connection.execute(
                    text(f'ALTER INDEX "{name}" RENAME TO "{name.replace(_FRESH, "", 1)}"')
                )
        else:
            for index in new.indexes:
                connection.execute(text(f'DROP INDEX "{index.name}"'))
            for index in old.indexes:
                index.create(connection)
    save_checkpoint(connection, PROJECTOR, cursor)
