"""``EventStore.append_next`` with several events: facts of one moment (an enrolment's
three) land together after the head, or none of them does."""

from itertools import pairwise

import pytest

from schemas import GENESIS_HASH, SealedEvent, seal
from services.eventstore import EventStore, StoredEvent
from services.eventstore.ports import next_events
from tests.support.streams import event_fields

STREAM = "registry:HP-000002"


def _services(head: StoredEvent | None, count: int) -> list[SealedEvent]:
    seq, prev_hash = (0, GENESIS_HASH) if head is None else (head.seq, head.hash)
    built = []
    for _ in range(count):
        seq += 1
        data = {"performed_by": "ops", "notes": f"visit {seq}", "actuations_at_service": None}
        event = seal(event_fields("HP-000002", seq, prev_hash, "device.serviced", data), STREAM)
        built.append(event)
        prev_hash = event.hash
    return built


def test_several_events_are_appended_after_the_head_in_order(store: EventStore) -> None:
    """Three events built from the head are stored as seqs 2..4, one chain; the last
    is returned."""
    store.append_next(STREAM, lambda head: _services(head, 1))
    appended = store.append_next(STREAM, lambda head: _services(head, 3))
    stored = store.read_stream(STREAM)
    assert [event.seq for event in stored] == [1, 2, 3, 4]
    assert all(after.prev_hash == before.hash for before, after in pairwise(stored))
    assert appended is not None
    assert appended.hash == stored[-1].hash


def test_a_refusal_while_building_leaves_the_stream_as_it_was(store: EventStore) -> None:
    """A builder that raises after seeing the head appends nothing."""
    store.append_next(STREAM, lambda head: _services(head, 1))

    def refuse(head: StoredEvent | None) -> list[SealedEvent]:
        _services(head, 2)
        raise LookupError("refused")

    with pytest.raises(LookupError):
        store.append_next(STREAM, refuse)
    assert len(store.read_stream(STREAM)) == 1
    assert store.append_next(STREAM, lambda head: []) is None
    assert len(store.read_stream(STREAM)) == 1


def test_what_a_builder_returns_reads_as_a_list() -> None:
    """One event, several, or nothing."""
    (one,) = _services(None, 1)
    assert next_events(one) == [one]
    assert next_events(None) == []
    assert next_events((one,)) == [one]
