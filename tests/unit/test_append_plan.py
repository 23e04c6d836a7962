"""The append rules shared by every adapter, without a database."""

from datetime import UTC, datetime

from schemas import SealedEvent
from services.eventstore import StreamHead
from services.eventstore.append_plan import (
    EventRow,
    SeqRange,
    StoredLink,
    StreamKey,
    neighbour_ranges,
    plan_append,
)
from tests.support.streams import device_stream, reseal

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def test_neighbour_ranges_cover_runs_widened_by_one() -> None:
    """Each run of consecutive seqs is fetched with one neighbour either side."""
    events = device_stream("HP-000001", 9)
    chosen = [events[i] for i in (0, 1, 2, 6, 7)] + device_stream("HP-000002", 2)
    assert neighbour_ranges(chosen) == [
        SeqRange("HP-000001", 0, 4),
        SeqRange("HP-000001", 6, 9),
        SeqRange("HP-000002", 0, 3),
    ]


def test_new_events_on_an_empty_store_are_all_inserted_in_seq_order() -> None:
    """A fresh chained stream, given in any order, is inserted whole, in seq order."""
    events = device_stream("HP-000001", 5)
    plan = plan_append(list(reversed(events)), {}, received_at=NOW)
    assert [event.seq for event in plan.joins] == [1, 2, 3, 4, 5]
    assert (plan.duplicates, plan.rejected) == (0, ())


def test_same_hash_is_a_duplicate_and_other_hash_a_conflict() -> None:
    """Stored key + same hash → duplicate; stored key + other hash → integrity rejection."""
    events = device_stream("HP-000001", 3)
    stored = {("HP-000001", e.seq): StoredLink(e.hash, e.prev_hash) for e in events}
    other = reseal(events[2], occurred_at="2026-11-24T10:00:00.000Z")
    plan = plan_append([events[1], other], stored, received_at=NOW)
    assert plan.joins == ()
    assert plan.duplicates == 1
    (letter,) = plan.rejected
    assert letter.rejection.reason == "integrity"
    assert "seq conflict" in letter.rejection.detail
    assert letter.topic == "coreline/v1/devices/HP-000001/events"


def test_a_batch_repeating_an_event_stores_it_once() -> None:
    """The same event twice in one batch: one insert, one duplicate."""
    events = device_stream("HP-000001", 2)
    plan = plan_append([events[0], events[1], events[1]], {}, received_at=NOW)
    assert [event.seq for event in plan.joins] == [1, 2]
    assert plan.duplicates == 1


def test_link_to_a_wrong_predecessor_is_refused() -> None:
    """prev_hash must equal the stored predecessor's hash."""
    events = device_stream("HP-000001", 3)
    stored = {("HP-000001", 1): StoredLink(events[0].hash, events[0].prev_hash)}
    forged = reseal(events[1], prev_hash="a" * 64)
    plan = plan_append([forged], stored, received_at=NOW)
    assert plan.joins == ()
    assert "prev_hash does not match" in plan.rejected[0].rejection.detail


def test_filling_a_gap_must_match_the_stored_successor() -> None:
    """An event arriving after its successor must be the one the successor points at."""
    events = device_stream("HP-000001", 3)
    stored = {
        ("HP-000001", 1): StoredLink(events[0].hash, events[0].prev_hash),
        ("HP-000001", 3): StoredLink(events[2].hash, events[2].prev_hash),
    }
    impostor = reseal(events[1], occurred_at="2026-11-24T11:00:00.000Z")
    refused = plan_append([impostor], stored, received_at=NOW)
    assert refused.joins == ()
    assert "does not point at" in refused.rejected[0].rejection.detail
    accepted = plan_append([events[1]], stored, received_at=NOW)
    assert [event.seq for event in accepted.joins] == [2]


def _stored(events: list[SealedEvent]) -> dict[StreamKey, StoredLink]:
    return {(e.stream_id, e.seq): StoredLink(e.hash, e.prev_hash) for e in events}


def _head(event: SealedEvent) -> dict[str, StreamHead]:
    return {event.stream_id: StreamHead(event.stream_id, event.seq, event.hash)}


def test_an_event_past_a_hole_is_held_not_joined() -> None:
    """An event whose predecessor is not stored is held; the head does not move."""
    events = device_stream("HP-000001", 5)
    plan = plan_append(events[3:], _stored(events[1:2]), received_at=NOW, heads=_head(events[1]))
    assert (plan.joins, plan.rejected, plan.heads) == ((), (), ())
    assert [row.seq for row in plan.holds] == [4, 5]
    assert plan.result().held == 2


def test_a_join_promotes_the_held_events_that_link() -> None:
    """The event filling a hole joins with the held run behind it, which keeps its
    received time, and the head moves to the run's end."""
    events = device_stream("HP-000001", 6)
    earlier = datetime(2026, 11, 24, 11, 0, tzinfo=UTC)
    held = [EventRow.of(event, earlier) for event in events[3:]]
    plan = plan_append(
        [events[2]], _stored(events[1:2]), received_at=NOW, heads=_head(events[1]), held=held
    )
    assert [(row.seq, row.received_at) for row in plan.joins] == [
        (3, NOW), (4, earlier), (5, earlier), (6, earlier),
    ]  # fmt: skip
    assert plan.released == tuple(held)
    assert plan.heads == (StreamHead("HP-000001", 6, events[5].hash),)


def test_a_refused_event_takes_its_descendants_with_it_as_one_run() -> None:
    """A chain break with held and arriving descendants: one run, one detail."""
    events = device_stream("HP-000001", 6)
    forged = [reseal(events[2], prev_hash="c" * 64)]
    for event in events[3:]:
        forged.append(reseal(event, prev_hash=forged[-1].hash))
    held = [EventRow.of(forged[2], NOW)]  # forged seq 5 arrived earlier
    plan = plan_append(
        [forged[0], forged[1], forged[3]],
        _stored(events[:2]),
        received_at=NOW,
        heads=_head(events[1]),
        held=held,
    )
    assert (plan.joins, plan.holds, plan.heads) == ((), (), ())
    assert [letter.rejection.seq for letter in plan.rejected] == [3, 4, 5, 6]
    (detail,) = {letter.rejection.detail for letter in plan.rejected}
    assert detail.startswith("chain custody: seqs 3..6 of HP-000001 refused as one run of 4")
    assert plan.released == tuple(held)


def test_a_lone_chain_break_keeps_its_plain_detail() -> None:
    """One arriving event that does not link, with nothing descending from it, is the
    chain break it always was."""
    events = device_stream("HP-000001", 3)
    plan = plan_append(
        [reseal(events[2], prev_hash="d" * 64)],
        _stored(events[:2]),
        received_at=NOW,
        heads=_head(events[1]),
    )
    (letter,) = plan.rejected
    assert letter.rejection.detail.startswith("chain break: prev_hash does not match")
