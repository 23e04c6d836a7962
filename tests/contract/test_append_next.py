"""``EventStore.append_next``: platform streams with several writers stay whole."""

import itertools
import threading

from schemas import GENESIS_HASH, SealedEvent, seal
from services.eventstore import EventStore, StoredEvent, open_event_store
from tests.support.streams import event_fields

STREAM = "registry:HP-000001"


def _next_service(head: StoredEvent | None) -> SealedEvent:
    seq, prev_hash = (1, GENESIS_HASH) if head is None else (head.seq + 1, head.hash)
    data = {"performed_by": "ops", "notes": f"visit {seq}", "actuations_at_service": None}
    return seal(event_fields("HP-000001", seq, prev_hash, "device.serviced", data), STREAM)


def test_the_first_event_of_an_empty_stream_sees_no_head(store: EventStore) -> None:
    """An empty stream gives the builder ``None``; what it builds is stored."""
    heads: list[StoredEvent | None] = []

    def build(head: StoredEvent | None) -> SealedEvent:
        heads.append(head)
        return _next_service(head)

    appended = store.append_next(STREAM, build)
    assert heads == [None]
    assert appended is not None
    assert [event.hash for event in store.read_stream(STREAM)] == [appended.hash]


def test_a_builder_that_declines_appends_nothing(store: EventStore) -> None:
    """``None`` from the builder leaves the stream as it was."""
    store.append_next(STREAM, _next_service)
    assert store.append_next(STREAM, lambda head: None) is None
    assert len(store.read_stream(STREAM)) == 1


def test_concurrent_writers_never_take_the_same_seq(store_url: str) -> None:
    """Two writers appending to one stream at once: every event lands, seqs 1..N in
    one chain, and no conflict is dead-lettered."""
    per_writer = 40
    failures: list[BaseException] = []

    def write() -> None:
        own = open_event_store(store_url)
        try:
            for _ in range(per_writer):
                own.append_next(STREAM, _next_service)
        except Exception as error:  # noqa: BLE001 - reported below, not lost with the thread
            failures.append(error)
        finally:
            own.close()

    writers = [threading.Thread(target=write) for _ in range(2)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()
    assert failures == []
    reader = open_event_store(store_url)
    try:
        stream = reader.read_stream(STREAM)
        assert [event.seq for event in stream] == list(range(1, 2 * per_writer + 1))
        assert all(later.prev_hash == earlier.hash for earlier, later in itertools.pairwise(stream))
        assert reader.dead_letters() == []
    finally:
        reader.close()
