"""What only the in-memory adapter needs proving beyond ``tests/contract``: it is one
object shared by threads rather than a database reached through connections."""

import itertools
import threading
import time

from schemas import GENESIS_HASH, SealedEvent, seal
from services.eventstore import InMemoryEventStore, StoredEvent
from tests.support.streams import device_stream, event_fields

STREAM = "registry:HP-000001"


def _next_service(head: StoredEvent | None) -> SealedEvent:
    seq, prev_hash = (1, GENESIS_HASH) if head is None else (head.seq + 1, head.hash)
    data = {"performed_by": "ops", "notes": f"visit {seq}", "actuations_at_service": None}
    return seal(event_fields("HP-000001", seq, prev_hash, "device.serviced", data), STREAM)


def test_threads_appending_next_never_take_the_same_seq() -> None:
    """Writers on several threads extend one stream: every event lands, seqs 1..N in one
    chain, and nothing is dead-lettered."""
    store = InMemoryEventStore()
    per_writer = 50

    def write() -> None:
        for _ in range(per_writer):
            store.append_next(STREAM, _next_service)

    writers = [threading.Thread(target=write) for _ in range(4)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()
    stream = store.read_stream(STREAM)
    assert [event.seq for event in stream] == list(range(1, 4 * per_writer + 1))
    assert all(later.prev_hash == earlier.hash for earlier, later in itertools.pairwise(stream))
    assert store.dead_letters() == []


def test_a_waiting_reader_wakes_on_another_threads_append() -> None:
    """A waiter sleeps out its timeout when nothing is appended, and wakes soon after
    another thread appends."""
    store = InMemoryEventStore()
    started = time.monotonic()
    store.wait_for_appends(0.2)
    assert time.monotonic() - started >= 0.15

    writer = threading.Timer(0.1, store.append, args=(device_stream("HP-000001", 3),))
    writer.start()
    started = time.monotonic()
    store.wait_for_appends(10)
    writer.join()
    assert time.monotonic() - started < 5
    assert store.count_events() == 3


def test_a_closed_store_can_be_handed_out_again() -> None:
    """Closing releases nothing, so a caller that drops and reopens its store (the
    gateway after a failure) can be given the same object and finds its data."""
    store = InMemoryEventStore()
    store.append(device_stream("HP-000001", 2))
    store.close()
    assert store.append(device_stream("HP-000001", 3)).appended == 1
    assert [event.seq for event in store.read_stream("HP-000001")] == [1, 2, 3]
