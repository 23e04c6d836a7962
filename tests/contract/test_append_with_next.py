"""``EventStore.append_with_next``: events and the next events of other streams, built
from their heads, in one transaction (a projector step's alert events)."""

from collections.abc import Callable
from itertools import pairwise

import pytest

from schemas import GENESIS_HASH, SealedEvent, seal
from services.eventstore import EventStore, StoredEvent
from tests.support.streams import event_fields

FIRST = "registry:HP-000003"
SECOND = "registry:HP-000004"


def _services(stream_id: str, head: StoredEvent | None, count: int = 1) -> list[SealedEvent]:
    device_id = stream_id.removeprefix("registry:")
    seq, prev_hash = (0, GENESIS_HASH) if head is None else (head.seq, head.hash)
    built = []
    for _ in range(count):
        seq += 1
        data = {"performed_by": "ops", "notes": f"visit {seq}", "actuations_at_service": None}
        event = seal(event_fields(device_id, seq, prev_hash, "device.serviced", data), stream_id)
        built.append(event)
        prev_hash = event.hash
    return built


def test_a_next_event_follows_an_event_appended_by_the_same_call(store: EventStore) -> None:
    """The events land first; a builder of their stream sees the last of them as its
    head, a builder of an empty stream sees none; what each built is returned."""
    heads: list[StoredEvent | None] = []

    def after(stream_id: str) -> Callable[[StoredEvent | None], list[SealedEvent]]:
        def build(head: StoredEvent | None) -> list[SealedEvent]:
            heads.append(head)
            return _services(stream_id, head)

        return build

    first = _services(FIRST, None, 2)
    result, built = store.append_with_next(first, [(FIRST, after(FIRST)), (SECOND, after(SECOND))])
    assert result.appended == 2
    assert [None if head is None else head.hash for head in heads] == [first[-1].hash, None]
    stored = store.read_stream(FIRST)
    assert [event.seq for event in stored] == [1, 2, 3]
    assert all(later.prev_hash == earlier.hash for earlier, later in pairwise(stored))
    assert [None if event is None else event.hash for event in built] == [
        stored[-1].hash,
        store.read_stream(SECOND)[-1].hash,
    ]


def test_two_next_events_of_one_stream_follow_each_other(store: EventStore) -> None:
    """A stream named twice: the second builder sees what the first appended."""
    store.append(_services(FIRST, None))
    _, built = store.append_with_next(
        [],
        [
            (FIRST, lambda head: _services(FIRST, head)),
            (FIRST, lambda head: _services(FIRST, head)),
        ],
    )
    stored = store.read_stream(FIRST)
    assert [event.seq for event in stored] == [1, 2, 3]
    assert all(later.prev_hash == earlier.hash for earlier, later in pairwise(stored))
    assert [None if event is None else event.seq for event in built] == [2, 3]


def test_a_declining_builder_appends_nothing_of_its_stream(store: EventStore) -> None:
    """``None`` from a builder: its stream stays as it was, the others' events land."""
    store.append(_services(FIRST, None))
    result, built = store.append_with_next(_services(SECOND, None), [(FIRST, lambda head: None)])
    assert result.appended == 1
    assert built == [None]
    assert len(store.read_stream(FIRST)) == 1
    assert len(store.read_stream(SECOND)) == 1


def test_a_refusal_while_building_lands_nothing_of_the_call(store: EventStore) -> None:
    """A builder that raises after the events were written: neither they nor any
    other builder's events are stored (one transaction, all or nothing)."""
    store.append(_services(FIRST, None))

    def refuse(head: StoredEvent | None) -> list[SealedEvent]:
        raise LookupError("refused")

    with pytest.raises(LookupError):
        store.append_with_next(
            _services(SECOND, None),
            [(FIRST, lambda head: _services(FIRST, head)), (FIRST, refuse)],
        )
    assert len(store.read_stream(FIRST)) == 1
    assert store.read_stream(SECOND) == []
