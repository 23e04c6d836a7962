"""Chain custody (DESIGN §4.2), run against every adapter: an event joins its stream
only when it links to its stored predecessor; events past a hole are held, out of
the stream, until the hole fills and their links check; a link that fails refuses
the whole held run as one incident, never splicing it into the chain."""

import itertools
import sqlite3
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from schemas import GENESIS_HASH, ChainLink, ChainStatus, SealedEvent, verify_chain
from services.audit.verify import DeviceTarget, verify
from services.eventstore import (
    Cursor,
    EventStore,
    Gap,
    StoredEvent,
    StreamHead,
    open_event_store,
)
from tests.support.chains import other_board
from tests.support.streams import device_stream

DEVICE = "HP-000001"
T0 = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def _hashes(events: list[StoredEvent] | list[SealedEvent]) -> list[str]:
    return [event.hash for event in events]


def _assert_linked_chain(stream: list[StoredEvent]) -> None:
    assert [event.seq for event in stream] == list(range(1, len(stream) + 1))
    if stream:
        assert stream[0].prev_hash == GENESIS_HASH
    assert all(later.prev_hash == earlier.hash for earlier, later in itertools.pairwise(stream))
    links = (ChainLink(event.seq, event.body, event.hash) for event in stream)
    assert verify_chain(links).status is ChainStatus.VERIFIED


def _read_all(store: EventStore) -> list[StoredEvent]:
    events: list[StoredEvent] = []
    cursor = Cursor.START
    while batch := store.read(cursor, 5):
        events.extend(batch)
        cursor = batch[-1].cursor
    return events


def test_a_reflashed_board_restarting_at_seq_1_never_enters_the_stream(
    store: EventStore,
) -> None:
    """A board restarting at seq 1 after 1..15 are stored: its events are conflicts or
    refused with them, never stored; the stream stays the original 1..15 and verifies."""
    original = device_stream(DEVICE, 20)
    store.append(original[:15])
    reflashed = other_board(original, 1)
    for start in range(0, 20, 5):
        result = store.append(reflashed[start : start + 5])
        assert (result.appended, result.held, result.heads) == (0, 0, ())
    assert _hashes(store.read_stream(DEVICE)) == _hashes(original[:15])
    letters = store.dead_letters(limit=100)
    assert [(letter.reason, letter.seq) for letter in letters] == [
        ("integrity", seq) for seq in range(1, 21)
    ]
    # Each message is one incident: 16 breaks the chain and 17..20 descend from it.
    (tail_detail,) = {letter.detail for letter in letters[15:]}
    assert tail_detail.startswith(f"chain custody: seqs 16..20 of {DEVICE} refused as one run")
    assert "prev_hash does not match" in tail_detail
    assert "seq conflict" in letters[0].detail
    assert store.find_gaps(DEVICE) == []
    assert store.count_events() == 15
    lines: list[str] = []
    assert verify(store, DeviceTarget(DEVICE), lines.append), lines


def test_a_reflashed_boards_tail_held_behind_a_hole_is_refused_as_one_run(
    store: EventStore,
) -> None:
    """The reflashed board's events past the stored head wait as held; when the
    original's next event arrives they fail their link and are refused as one run."""
    original = device_stream(DEVICE, 20)
    store.append(original[:15])
    reflashed = other_board(original, 1)
    for event in reflashed[:20]:  # one event per message, as a slow link delivers them
        store.append([event])
    assert _hashes(store.read_stream(DEVICE)) == _hashes(original[:15])
    assert store.find_gaps(DEVICE) == [Gap(DEVICE, 16, 16)]
    refused_before = len(store.dead_letters(limit=100))

    result = store.append([original[15]])
    assert result.appended == 1
    assert result.heads == (StreamHead(DEVICE, 16, original[15].hash),)
    details = {letter.rejection.detail for letter in result.rejected}
    assert [letter.rejection.seq for letter in result.rejected] == [17, 18, 19, 20]
    (detail,) = details
    assert detail.startswith(f"chain custody: seqs 17..20 of {DEVICE}")
    assert len(store.dead_letters(limit=100)) == refused_before + 4
    assert store.find_gaps(DEVICE) == []
    assert store.append(original[16:]).appended == 4  # the true 17..20 join unhindered
    _assert_linked_chain(store.read_stream(DEVICE))
    assert _hashes(store.read_stream(DEVICE)) == _hashes(original)


def test_two_boards_on_one_id_leave_the_first_writers_linked_prefix(store: EventStore) -> None:
    """Two boards interleaving (what used to store as BB.AAAAAAAAA.BBB.AAA): only the
    first writer's linked prefix is stored, nothing of the other board."""
    board_a = device_stream(DEVICE, 20)
    board_b = other_board(board_a, 1)
    arrivals = [
        board_b[0:2],  # BB
        board_a[0:2],  # conflicts with the first writer
        board_a[3:12],  # A4..A12: A3 was lost, so they wait as held
        board_b[13:16],  # B14..B16: held too
        board_a[17:20],  # A18..A20: held too
    ]
    assert store.append(arrivals[0]).appended == 2
    for batch in arrivals[1:]:
        assert store.append(batch).appended == 0
    assert _hashes(store.read_stream(DEVICE)) == _hashes(board_b[:2])
    assert store.find_gaps(DEVICE) == [Gap(DEVICE, 3, 3), Gap(DEVICE, 13, 13), Gap(DEVICE, 17, 17)]

    a3 = store.append([board_a[2]])  # A resends its lost seq 3: it does not link to B2
    assert (a3.appended, a3.heads) == (0, ())
    assert [letter.rejection.seq for letter in a3.rejected] == list(range(3, 13))
    (detail,) = {letter.rejection.detail for letter in a3.rejected}  # with A's held 4..12
    assert detail.startswith(f"chain custody: seqs 3..12 of {DEVICE} refused as one run")
    assert "prev_hash does not match" in detail

    b_fill = store.append(board_b[2:13])  # B fills 3..13: its held 14..16 are promoted
    assert b_fill.appended == 14
    assert b_fill.heads == (StreamHead(DEVICE, 16, board_b[15].hash),)
    b17 = store.append([board_b[16]])  # and B17 refuses A's held 18..20
    assert b17.heads == (StreamHead(DEVICE, 17, board_b[16].hash),)
    assert [letter.rejection.seq for letter in b17.rejected] == [18, 19, 20]

    stream = store.read_stream(DEVICE)
    _assert_linked_chain(stream)
    assert _hashes(stream) == _hashes(board_b[:17])
    assert not set(_hashes(stream)) & set(_hashes(board_a))
    assert store.find_gaps(DEVICE) == []


def test_a_filled_hole_promotes_held_events_in_the_same_append(store: EventStore) -> None:
    """Events past a hole are held; the append that fills it stores them too, in seq
    order in the global order, and reports the new head."""
    events = device_stream(DEVICE, 8)
    store.append(events[:3], received_at=T0)
    before = _read_all(store)[-1].cursor
    held = store.append(events[4:], received_at=T0 + timedelta(seconds=1))
    assert (held.appended, held.held, held.duplicates, held.heads) == (0, 4, 0, ())

    filled = store.append([events[3]], received_at=T0 + timedelta(seconds=2))
    assert (filled.appended, filled.held, filled.rejected) == (5, 0, ())
    assert filled.heads == (StreamHead(DEVICE, 8, events[7].hash),)
    assert store.head(DEVICE) == filled.heads[0]
    assert [event.seq for event in store.read(before)] == [4, 5, 6, 7, 8]
    _assert_linked_chain(store.read_stream(DEVICE))
    # A promoted event keeps the time the platform received it, not the promotion's.
    received = {event.seq: event.received_at for event in store.read_stream(DEVICE)}
    assert received[4] == T0 + timedelta(seconds=2)
    assert received[5] == received[8] == T0 + timedelta(seconds=1)
    assert store.dead_letters() == []


def test_held_events_are_invisible_until_promoted(store: EventStore) -> None:
    """Held events are in no read, no count, no head and no contiguous run."""
    events = device_stream(DEVICE, 6)
    store.append(events[:2])
    assert store.append(events[3:]).held == 3
    assert [event.seq for event in _read_all(store)] == [1, 2]
    assert [record.seq for record in store.read_records(Cursor.START)] == [1, 2]
    assert [event.seq for event in store.read_stream(DEVICE)] == [1, 2]
    assert store.read_stream(DEVICE, 4, 6) == []
    assert store.count_events() == 2
    assert store.head(DEVICE) == StreamHead(DEVICE, 2, events[1].hash)
    assert store.contiguous_through(DEVICE) == 2
    store.append([events[2]])
    assert [record.seq for record in store.read_records(Cursor.START)] == list(range(1, 7))
    assert store.count_events() == 6


def test_find_gaps_reports_the_holes_below_and_between_held_events(store: EventStore) -> None:
    """The holes a device must fill: below held events and between them, never after
    the last one the platform has."""
    events = device_stream(DEVICE, 12)
    store.append([events[seq - 1] for seq in (1, 2, 3, 6, 7, 10)])
    assert store.find_gaps(DEVICE) == [Gap(DEVICE, 4, 5), Gap(DEVICE, 8, 9)]
    assert store.find_gaps(DEVICE, 5) == [Gap(DEVICE, 8, 9)]
    assert store.find_gaps(DEVICE, 10) == []
    assert store.contiguous_through(DEVICE) == 3
    only_held = device_stream("HP-000002", 4)
    store.append(only_held[2:])
    assert store.find_gaps("HP-000002") == [Gap("HP-000002", 1, 2)]
    store.append(events[3:5])
    assert store.find_gaps(DEVICE) == [Gap(DEVICE, 8, 9)]
    assert store.contiguous_through(DEVICE) == 7


def test_head_is_the_highest_stored_seq_and_its_hash(store: EventStore) -> None:
    """``head`` names the stored head; an empty stream has none, held events move none."""
    assert store.head(DEVICE) is None
    events = device_stream(DEVICE, 7)
    store.append(events[:5])
    assert store.head(DEVICE) == StreamHead(DEVICE, 5, events[4].hash)
    store.append(events[6:])
    assert store.head(DEVICE) == StreamHead(DEVICE, 5, events[4].hash)
    assert store.head("HP-404404") is None


def test_heads_name_only_the_streams_whose_head_moved(store: EventStore) -> None:
    """One append over several streams reports the heads it moved and no other."""
    moved, waiting, resent = (device_stream(f"HP-00000{n}", 4) for n in (1, 2, 3))
    store.append(resent)
    result = store.append([*moved[:2], *waiting[2:], *resent[:2]])
    assert result.heads == (StreamHead(moved[0].stream_id, 2, moved[1].hash),)
    assert (result.appended, result.held, result.duplicates) == (2, 2, 2)
    assert store.append(resent).heads == ()


def test_resent_held_events_are_duplicates_and_join_once(store: EventStore) -> None:
    """A held event resent with the same hash is a no-op; it is stored once when promoted."""
    events = device_stream(DEVICE, 6)
    store.append(events[:2])
    store.append(events[3:])
    again = store.append(events[3:])
    assert (again.appended, again.held, again.duplicates) == (0, 0, 3)
    filled = store.append(events[2:])  # the hole and the held events, resent together
    assert (filled.appended, filled.duplicates) == (4, 3)
    assert [event.seq for event in _read_all(store)] == list(range(1, 7))
    assert store.dead_letters() == []


def test_several_candidates_wait_for_one_seq_and_only_the_linking_one_joins(
    store: EventStore,
) -> None:
    """Two chains held past the same hole: the fill promotes the one that links, and
    the other is refused as one run."""
    mine = device_stream(DEVICE, 8)
    theirs = other_board(mine, 4)
    store.append(mine[:3])
    store.append(theirs[4:7])  # theirs 5..7 first: arriving first gives no precedence
    assert store.append(mine[4:8]).held == 4
    assert store.find_gaps(DEVICE) == [Gap(DEVICE, 4, 4)]

    result = store.append([mine[3]])
    assert result.appended == 5
    assert result.heads == (StreamHead(DEVICE, 8, mine[7].hash),)
    assert [letter.rejection.seq for letter in result.rejected] == [5, 6, 7]
    (detail,) = {letter.rejection.detail for letter in result.rejected}
    assert detail.startswith(f"chain custody: seqs 5..7 of {DEVICE} refused as one run")
    assert {letter.rejection.reason for letter in result.rejected} == {"integrity"}
    assert _hashes(store.read_stream(DEVICE)) == _hashes(mine)
    assert store.find_gaps(DEVICE) == []


def test_a_held_lone_event_that_fails_its_link_is_a_custody_incident(store: EventStore) -> None:
    """Even one held event that does not link is refused under ``chain custody:``."""
    mine = device_stream(DEVICE, 5)
    theirs = other_board(mine, 4)
    store.append(mine[:3])
    store.append([theirs[4]])
    result = store.append([mine[3]])
    (letter,) = result.rejected
    assert letter.rejection.seq == 5
    assert letter.rejection.detail.startswith(f"chain custody: seqs 5..5 of {DEVICE}")
    (stored_letter,) = store.dead_letters()
    assert stored_letter.raw == theirs[4].wire_json()


def test_held_events_survive_reopening_the_store(store_url: str, store: EventStore) -> None:
    """Held events are durable: a store opened afresh promotes them when the hole fills."""
    events = device_stream(DEVICE, 6)
    store.append(events[:2])
    store.append(events[3:])
    store.close()
    reopened = open_event_store(store_url)
    try:
        result = reopened.append([events[2]])
        assert result.appended == 4
        assert result.heads == (StreamHead(DEVICE, 6, events[5].hash),)
        _assert_linked_chain(reopened.read_stream(DEVICE))
    finally:
        reopened.close()


def test_held_events_cannot_be_changed(store_url: str, store: EventStore) -> None:
    """The database refuses an UPDATE of a held event: a held row is only ever
    promoted or refused, never rewritten."""
    events = device_stream(DEVICE, 4)
    store.append(events[2:])
    with pytest.raises(Exception, match="never changed"):
        _execute_raw(store_url, "UPDATE held_events SET seq = seq + 100")
    store.append(events[:2])
    _assert_linked_chain(store.read_stream(DEVICE))
    assert store.count_events() == 4


def _execute_raw(url: str, statement: str) -> None:
    if url.startswith("sqlite:///"):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as sqlite_connection:
            sqlite_connection.execute(statement)
        return
    with psycopg.connect(url) as connection:
        connection.execute(statement)
