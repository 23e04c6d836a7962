"""The global order across a promotion (DESIGN §5, docs/high-availability.md).

Readers follow the store by ``(transaction id, position)`` below the oldest running
transaction.  That stays sound across a failover only if the standby that is promoted
knows every transaction id the old primary's readers saw, and hands out none of them
again: physical replication ships the commit records, and a promoted standby continues
the transaction counter past every id it replayed.  Proven here rather than assumed,
under concurrent writers, with the primary's postmaster killed mid-stream."""

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import psycopg
import pytest

from schemas import GENESIS_HASH, SealedEvent
from services.eventstore import (
    Cursor,
    EventStore,
    EventStoreError,
    StoredEvent,
    open_event_store,
)
from services.eventstore import upgrade_schema as migrate
from services.projections.read_store import ReadModelStore
from services.projector import PROJECTOR, Projector, replay
from tests.support import failover
from tests.support.patroni import PatroniCluster
from tests.support.streams import device_stream

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

WRITERS = 2
DEVICES_PER_WRITER = 5
BATCH = 10
IDLE_WAIT_S = 10.0
WOKEN_WITHIN_S = 4.0
"""The projector idles for ``IDLE_WAIT_S`` between reads; a notification must wake it
well before that."""


@pytest.fixture(scope="module")
def cluster() -> Iterator[PatroniCluster]:
    with PatroniCluster() as started:
        yield started


@dataclass
class Writer:
    """Appends chained batches to its own devices until stopped, retrying a batch
    whose outcome it did not learn (appends are idempotent) until the store answers."""

    url: str
    number: int
    acknowledged: list[tuple[str, int, str]] = field(default_factory=list)
    retries: int = 0

    def run(self, stop: threading.Event) -> None:
        store = open_event_store(self.url)
        devices = [f"HP-{self.number}{n:05d}" for n in range(DEVICES_PER_WRITER)]
        heads = dict.fromkeys(devices, (1, GENESIS_HASH))
        try:
            while not stop.is_set():
                for device in devices:
                    first, prev = heads[device]
                    batch = device_stream(device, BATCH, first_seq=first, prev_hash=prev)
                    while not _appended(store, batch):
                        self.retries += 1
                        time.sleep(0.2)
                    self.acknowledged += [(e.stream_id, e.seq, e.hash) for e in batch]
                    heads[device] = (first + BATCH, batch[-1].hash)
                time.sleep(0.02)
        finally:
            store.close()


def _appended(store: EventStore, batch: list[SealedEvent]) -> bool:
    try:
        store.append(batch)
    except EventStoreError:
        return False
    return True


def test_transaction_ids_cursors_and_notifications_carry_over_a_promotion(
    cluster: PatroniCluster,
) -> None:
    """Across a ``kill -9`` of the primary's postmaster under two writers: every event
    stored before it keeps its cursor on the new primary, which knows its writer's
    transaction as committed and hands out only later ids; a projector checkpoint from
    before selects exactly the events stored since; the projector, idling on LISTEN,
    is woken by the new primary's notifications; no acknowledged event is lost; and
    its read models equal a replay."""
    url = cluster.create_database("order_across_promotion")
    migrate(url)
    stop = threading.Event()
    read_models = ReadModelStore(url)
    projector_store = open_event_store(url)
    projector = Projector(projector_store, read_models, alerts=False, batch_size=200)
    folding = threading.Thread(target=projector.run, args=(stop, IDLE_WAIT_S))
    folding.start()
    try:
        seen = _fail_over_under_writers(cluster, url, read_models)
        store = open_event_store(url)
        after = _cursors(url)
        _assert_order_carried_over(url, seen, after)
        # A checkpoint taken on the old primary still means the same place in the order.
        since = [(e.cursor, e.stream_id, e.seq, e.hash) for e in _read_all(store, seen.checkpoint)]
        assert since == [row for row in after if row[0] > seen.checkpoint]
        _wait_for(lambda: read_models.checkpoint(PROJECTOR) == after[-1][0], "the projector", 60)
        time.sleep(1.0)  # idle now, waiting on its LISTEN
        (extra,) = device_stream("HP-900000", 1)
        store.append([extra])
        woken = time.monotonic()
        _wait_for(lambda: read_models.checkpoint(PROJECTOR) > after[-1][0], "a wake-up", 30)
        assert time.monotonic() - woken < WOKEN_WITHIN_S, "no notification from the new primary"
    finally:
        stop.set()
        folding.join(timeout=60)
        projector_store.close()
    live = _without_sessions(failover.read_models(url))
    replay(url, store)
    assert _without_sessions(failover.read_models(url)) == live, "the read models differ"
    store.close()
    read_models.close()


@dataclass(frozen=True)
class SeenBefore:
    """What the old primary showed its readers just before the kill."""

    events: list[tuple[Cursor, str, int, str]]
    checkpoint: Cursor
    """The projector's, from the old primary."""
    horizon: int
    acknowledged: set[tuple[str, int, str]]
    """Every event whose append returned, before and after the failover."""


def _fail_over_under_writers(
    cluster: PatroniCluster, url: str, read_models: ReadModelStore
) -> SeenBefore:
    """Kill the primary's postmaster while two writers append; return once they have
    written on the new primary too, and have stopped."""
    stop = threading.Event()
    writers = [Writer(url, n) for n in range(1, WRITERS + 1)]
    threads = [threading.Thread(target=w.run, args=(stop,)) for w in writers]
    for thread in threads:
        thread.start()

    def written() -> int:
        return sum(len(w.acknowledged) for w in writers)

    try:
        _wait_for(lambda: written() >= 400, "writes", 60)
        _wait_for(lambda: read_models.checkpoint(PROJECTOR) > Cursor.START, "a fold", 30)
        checkpoint, events, horizon = (
            read_models.checkpoint(PROJECTOR),
            _cursors(url),
            _horizon(url),
        )
        old = cluster.leader()
        old.kill_postmaster()
        cluster.wait_for_new_leader(old)
        then = written()
        _wait_for(lambda: written() >= then + 200, "writes on the new primary", 60)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
    assert sum(w.retries for w in writers) > 0, "no writer saw the failover: it proved nothing"
    return SeenBefore(events, checkpoint, horizon, {e for w in writers for e in w.acknowledged})


def _assert_order_carried_over(
    url: str, seen: SeenBefore, after: list[tuple[Cursor, str, int, str]]
) -> None:
    assert after[: len(seen.events)] == seen.events, "an event stored before the failover moved"
    assert after == sorted(after), "the global order is not (transaction id, position)"
    assert {(s, q, h) for _, s, q, h in after} >= seen.acknowledged, "an acknowledged loss"
    assert len({(s, q) for _, s, q, _ in after}) == len(after), "an event stored twice"
    newest_before = max(cursor.commit for cursor, *_ in seen.events)
    assert _status_on_primary(url, newest_before) == "committed"
    assert _next_transaction(url) > max(cursor.commit for cursor, *_ in after)
    assert _horizon(url) >= seen.horizon


def _without_sessions(read_models: failover.ReadModels) -> failover.ReadModels:
    """Every test stream shares one session id, so which device's session a session
    row shows depends on the fold's batching; every other row must be the same."""
    return {table: rows for table, rows in read_models.items() if table != "read_sessions"}


def _cursors(url: str) -> list[tuple[Cursor, str, int, str]]:
    store = open_event_store(url)
    try:
        return [(e.cursor, e.stream_id, e.seq, e.hash) for e in _read_all(store, Cursor.START)]
    finally:
        store.close()


def _read_all(store: EventStore, after: Cursor) -> list[StoredEvent]:
    found: list[StoredEvent] = []
    while batch := store.read(after, 5000):
        found += batch
        after = batch[-1].cursor
    return found


def _horizon(url: str) -> int:
    with psycopg.connect(url) as connection:
        row = connection.execute(
            "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint"
        ).fetchone()
    assert row is not None
    return int(row[0])


def _next_transaction(url: str) -> int:
    with psycopg.connect(url) as connection:
        row = connection.execute("SELECT pg_current_xact_id()::text::bigint").fetchone()
    assert row is not None
    return int(row[0])


def _status_on_primary(url: str, transaction: int) -> str:
    with psycopg.connect(url) as connection:
        row = connection.execute("SELECT pg_xact_status(%s::text::xid8)", (str(transaction),))
        found = row.fetchone()
    assert found is not None
    return str(found[0])


def _wait_for(check: Callable[[], bool], what: str, within_s: float) -> None:
    deadline = time.monotonic() + within_s
    while not check():
        assert time.monotonic() < deadline, f"not within {within_s:.0f} s: {what}"
        time.sleep(0.1)
