"""Subscribers never skip an event committed late by a slower writer (DESIGN §5)."""

import multiprocessing
import random
import time
from datetime import UTC, datetime

import psycopg
import pytest

from schemas import SealedEvent
from services.eventstore import Cursor, EventStore, StoredEvent, open_event_store
from tests.support.streams import device_stream

_WRITERS = 4
_BATCHES_PER_WRITER = 25
_EVENTS_PER_BATCH = 40


def _insert_without_commit(
    connection: psycopg.Connection[tuple[object, ...]], device_id: str
) -> None:
    """Write one event the way a slow gateway would, and leave the transaction open."""
    (event,) = device_stream(device_id, 1)
    connection.execute(
        "INSERT INTO events (stream_id, device_id, seq, event_id, type, occurred_at, received_at, "
        "hash, prev_hash, body) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (event.stream_id, event.device_id, event.seq, event.event_id, event.type,
         event.occurred_at, datetime.now(UTC), event.hash, event.prev_hash, event.body),
    )  # fmt: skip


def test_reader_waits_for_a_transaction_that_commits_late(postgres_url: str) -> None:
    """A writer that took an earlier position but commits later is still read, and
    nothing after it is handed out before it commits."""
    store = open_event_store(postgres_url)
    store.append(device_stream("HP-000001", 2))
    slow = psycopg.connect(postgres_url)
    _insert_without_commit(slow, "HP-000002")
    store.append(device_stream("HP-000003", 1))

    first_read = store.read(Cursor.START)
    assert [event.stream_id for event in first_read] == ["HP-000001", "HP-000001"]
    positions = {e.stream_id: e.cursor.position for e in store.read_stream("HP-000003")}
    assert positions["HP-000003"] > first_read[-1].cursor.position + 1, "the fast writer overtook"

    slow.commit()
    rest = store.read(first_read[-1].cursor)
    assert [event.stream_id for event in rest] == ["HP-000002", "HP-000003"]
    slow.close()
    store.close()


def _write(url: str, writer: int, seed: int, late_chunks: float = 0.0) -> None:
    """One concurrent writer: its own devices, batches of consecutive events, jittered.
    With ``late_chunks``, that share of chunks is sent one batch late, so the events
    after each wait as held and the late chunk's append promotes them."""
    rng = random.Random(seed)
    store = open_event_store(url)
    # Each device has enough events for every batch to draw only from it.
    per_device = _BATCHES_PER_WRITER * _EVENTS_PER_BATCH
    streams = [device_stream(f"HP-{writer:02d}{device:04d}", per_device) for device in range(4)]
    cursors = [0] * len(streams)
    late: list[SealedEvent] = []
    for _ in range(_BATCHES_PER_WRITER):
        batch, late = late, []
        while len(batch) < _EVENTS_PER_BATCH:
            device = rng.randrange(len(streams))
            take = rng.randint(1, 10)
            chunk = streams[device][cursors[device] : cursors[device] + take]
            cursors[device] += take
            (late if rng.random() < late_chunks else batch).extend(chunk)
        store.append(batch)
        time.sleep(rng.random() / 200)
    store.append(late)
    store.close()


@pytest.mark.slow
@pytest.mark.parametrize("late_chunks", [0.0, 0.2], ids=["in-order", "promotions"])
def test_concurrent_writers_and_a_tailing_reader_agree(store_url: str, late_chunks: float) -> None:
    """Several writer processes append while a reader tails: the reader sees every
    committed event exactly once, in a cursor order that never goes back (also when
    appends promote held events: they enter the order with the promoting commit)."""
    context = multiprocessing.get_context("spawn")
    writers = [
        context.Process(target=_write, args=(store_url, n, n, late_chunks)) for n in range(_WRITERS)
    ]
    for process in writers:
        process.start()
    reader = open_event_store(store_url)
    seen: list[StoredEvent] = []
    cursor = Cursor.START
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        writing = any(process.is_alive() for process in writers)
        batch = reader.read(cursor, 97)
        seen.extend(batch)
        cursor = batch[-1].cursor if batch else cursor
        if not batch and not writing:
            break
    for process in writers:
        process.join()
        assert process.exitcode == 0
    keys = [(event.stream_id, event.seq) for event in seen]
    assert len(keys) == len(set(keys)), "an event was read twice"
    assert [e.cursor for e in seen] == sorted(e.cursor for e in seen)
    stored = _count_all(reader)
    assert len(keys) == stored, f"reader saw {len(keys)} of {stored} stored events"
    assert stored >= _WRITERS * _BATCHES_PER_WRITER * _EVENTS_PER_BATCH
    # Custody: each stream enters the global order in seq order, from 1, whole.
    seqs_read: dict[str, list[int]] = {}
    for event in seen:
        seqs_read.setdefault(event.stream_id, []).append(event.seq)
    assert all(seqs == list(range(1, len(seqs) + 1)) for seqs in seqs_read.values())
    reader.close()


def _count_all(store: EventStore) -> int:
    total, cursor = 0, Cursor.START
    while batch := store.read(cursor, 5000):
        total += len(batch)
        cursor = batch[-1].cursor
    return total
