"""The append rules shared by every adapter, without a database."""

from services.eventstore.append_plan import SeqRange, StoredLink, neighbour_ranges, plan_append
from tests.support.streams import device_stream, reseal


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
    plan = plan_append(list(reversed(events)), {})
    assert [event.seq for event in plan.inserts] == [1, 2, 3, 4, 5]
    assert (plan.duplicates, plan.rejected) == (0, ())


def test_same_hash_is_a_duplicate_and_other_hash_a_conflict() -> None:
    """Stored key + same hash → duplicate; stored key + other hash → integrity rejection."""
    events = device_stream("HP-000001", 3)
    stored = {("HP-000001", e.seq): StoredLink(e.hash, e.prev_hash) for e in events}
    other = reseal(events[2], occurred_at="2026-11-24T10:00:00.000Z")
    plan = plan_append([events[1], other], stored)
    assert plan.inserts == ()
    assert plan.duplicates == 1
    (letter,) = plan.rejected
    assert letter.rejection.reason == "integrity"
    assert "seq conflict" in letter.rejection.detail
    assert letter.topic == "coreline/v1/devices/HP-000001/events"


def test_a_batch_repeating_an_event_stores_it_once() -> None:
    """The same event twice in one batch: one insert, one duplicate."""
    events = device_stream("HP-000001", 2)
    plan = plan_append([events[0], events[1], events[1]], {})
    assert [event.seq for event in plan.inserts] == [1, 2]
    assert plan.duplicates == 1


def test_link_to_a_wrong_predecessor_is_refused() -> None:
    """prev_hash must equal the stored predecessor's hash."""
    events = device_stream("HP-000001", 3)
    stored = {("HP-000001", 1): StoredLink(events[0].hash, events[0].prev_hash)}
    forged = reseal(events[1], prev_hash="a" * 64)
    plan = plan_append([forged], stored)
    assert plan.inserts == ()
    assert "prev_hash does not match" in plan.rejected[0].rejection.detail


def test_filling_a_gap_must_match_the_stored_successor() -> None:
    """An event arriving after its successor must be the one the successor points at."""
    events = device_stream("HP-000001", 3)
    stored = {
        ("HP-000001", 1): StoredLink(events[0].hash, events[0].prev_hash),
        ("HP-000001", 3): StoredLink(events[2].hash, events[2].prev_hash),
    }
    impostor = reseal(events[1], occurred_at="2026-11-24T11:00:00.000Z")
    refused = plan_append([impostor], stored)
    assert refused.inserts == ()
    assert "does not point at" in refused.rejected[0].rejection.detail
    accepted = plan_append([events[1]], stored)
    assert [event.seq for event in accepted.inserts] == [2]
