"""The event-store contract (DESIGN §5), run against every adapter."""

import random
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from schemas import (
    ChainLink,
    ChainStatus,
    Heartbeat,
    Rejection,
    RejectionReason,
    SealedEvent,
    decode_event_batch,
    registry_stream,
    seal,
    verify_chain,
)
from services.eventstore import DEAD_LETTER_RAW_LIMIT, Cursor, DeadLetter, EventStore, StoredEvent
from tests.support.streams import device_stream, event_fields, reseal
from tests.support.vectors import STREAM_DEVICES, batch_payload, load_stream


def _read_all(store: EventStore, page: int = 7) -> list[StoredEvent]:
    events: list[StoredEvent] = []
    cursor = Cursor.START
    while batch := store.read(cursor, page):
        events.extend(batch)
        cursor = batch[-1].cursor
    return events


def test_appended_events_read_back_byte_for_byte(store: EventStore) -> None:
    """What is appended reads back in order with the exact hashed bytes."""
    events = device_stream("HP-000001", 20)
    result = store.append(events)
    assert (result.appended, result.duplicates, result.rejected) == (20, 0, ())
    stored = _read_all(store)
    assert [(e.stream_id, e.seq, e.hash, e.body) for e in stored] == [
        (e.stream_id, e.seq, e.hash, e.body) for e in events
    ]
    assert stored[3].sealed().event == events[3].event
    assert stored[0].received_at.tzinfo is not None


def test_cursors_strictly_increase_and_pages_cover_everything_once(store: EventStore) -> None:
    """Paging with any page size returns every event exactly once, cursors increasing."""
    for device in range(4):
        store.append(device_stream(f"HP-00000{device}", 9))
    stored = _read_all(store, page=4)
    assert len(stored) == 36
    cursors = [event.cursor for event in stored]
    assert cursors == sorted(cursors)
    assert len(set(cursors)) == 36
    assert store.read(stored[-1].cursor) == []


def test_resent_events_are_duplicates_not_copies(store: EventStore) -> None:
    """Appending the same events again stores nothing and counts them as duplicates."""
    events = device_stream("HP-000001", 10)
    store.append(events)
    result = store.append(events[4:])
    assert (result.appended, result.duplicates, result.rejected) == (0, 6, ())
    assert len(_read_all(store)) == 10
    assert store.dead_letters() == []


def test_seq_conflict_keeps_the_first_and_dead_letters_the_second(store: EventStore) -> None:
    """Same (device, seq), another hash: the stored event stays, the newcomer is dead-lettered."""
    events = device_stream("HP-000001", 5)
    store.append(events)
    impostor = reseal(events[4], occurred_at="2026-11-24T12:00:00.000Z")
    result = store.append([impostor])
    assert result.appended == 0
    assert [letter.rejection.reason for letter in result.rejected] == [RejectionReason.INTEGRITY]
    assert store.read_stream("HP-000001", 5, 5)[0].hash == events[4].hash
    (letter,) = store.dead_letters()
    assert (letter.reason, letter.device_id, letter.seq) == ("integrity", "HP-000001", 5)
    assert "seq conflict" in letter.detail
    assert letter.topic == "coreline/v1/devices/HP-000001/events"


def test_broken_link_is_dead_lettered_and_the_chain_stays_whole(store: EventStore) -> None:
    """An event not linking to its stored predecessor is refused; the stored chain verifies."""
    events = device_stream("HP-000001", 6)
    store.append(events[:3])
    forged = reseal(events[3], prev_hash="b" * 64)
    result = store.append([forged, *events[4:]])
    # seq 5 links to the real seq 4, which is not stored: it waits behind a gap (held).
    assert (result.appended, result.held) == (0, 2)
    assert "prev_hash does not match" in result.rejected[0].rejection.detail
    assert store.append([events[3]]).appended == 3  # seq 4, and the held 5 and 6
    links = [ChainLink(e.seq, e.body, e.hash) for e in store.read_stream("HP-000001")]
    assert verify_chain(links).status is ChainStatus.VERIFIED


def test_events_fill_gaps_in_any_order(store: EventStore) -> None:
    """Out-of-order arrival (resends after a gap) stores every event once, chain intact."""
    events = device_stream("HP-000001", 30)
    shuffled = events[:]
    random.Random(7).shuffle(shuffled)
    for start in range(0, 30, 4):
        store.append(shuffled[start : start + 4])
    stream = store.read_stream("HP-000001")
    assert [event.seq for event in stream] == list(range(1, 31))
    assert (
        verify_chain(ChainLink(e.seq, e.body, e.hash) for e in stream).status
        is ChainStatus.VERIFIED
    )


def test_read_stream_honours_bounds_and_limit(store: EventStore) -> None:
    """A stream is read in seq order between inclusive bounds, up to a limit."""
    store.append(device_stream("HP-000001", 12) + device_stream("HP-000002", 3))
    assert [e.seq for e in store.read_stream("HP-000001", 4, 7)] == [4, 5, 6, 7]
    assert [e.seq for e in store.read_stream("HP-000001", 10)] == [10, 11, 12]
    assert [e.seq for e in store.read_stream("HP-000001", 2, limit=2)] == [2, 3]
    assert store.read_stream("HP-404404") == []


def test_protocol_vectors_store_and_verify(store: EventStore, vectors_dir: Path) -> None:
    """The vector streams, appended shuffled in chunks, verify to their expected heads."""
    decoded: list[SealedEvent] = []
    for device_id in STREAM_DEVICES:
        events = load_stream(vectors_dir, device_id)["events"]
        decoded.extend(decode_event_batch(device_id, batch_payload(device_id, events)).events)
    random.Random(11).shuffle(decoded)
    for start in range(0, len(decoded), 25):
        assert store.append(decoded[start : start + 25]).rejected == ()
    for device_id in STREAM_DEVICES:
        expected = load_stream(vectors_dir, device_id)["expected"]
        stream = store.read_stream(device_id)
        verdict = verify_chain(ChainLink(e.seq, e.body, e.hash) for e in stream)
        assert verdict.status is ChainStatus.VERIFIED
        assert (verdict.last_seq, verdict.last_hash) == (
            expected["last_seq"],
            expected["last_hash"],
        )


def test_platform_streams_sit_beside_device_streams(store: EventStore) -> None:
    """A platform event lives in its own stream, chained, keyed apart from the device's events."""
    store.append(device_stream("HP-000001", 2))
    fields = event_fields(
        "HP-000001", 1, "0" * 64, "device.registered", {"model": "CX-2", "registered_by": "fleet"}
    )
    registration = seal(fields, registry_stream("HP-000001"))
    assert store.append([registration]).appended == 1
    (stored,) = store.read_stream("registry:HP-000001")
    assert (stored.device_id, stored.seq, stored.type) == ("HP-000001", 1, "device.registered")
    assert len(store.read_stream("HP-000001")) == 2


def test_dead_letters_keep_bounded_raw_bytes_with_their_size(store: EventStore) -> None:
    """Refused input is stored with topic, reason, detail and at most the raw limit of bytes."""
    huge = b"x" * (DEAD_LETTER_RAW_LIMIT + 10)
    letters = [
        DeadLetter(
            "coreline/v1/devices/HP-000001/events",
            Rejection(RejectionReason.MALFORMED, "not JSON", b"{", "HP-000001"),
        ),
        DeadLetter(
            "coreline/v1/devices/HP-000002/events",
            Rejection(RejectionReason.OVERSIZE, "too big", huge, "HP-000002"),
        ),
    ]
    result = store.append([], letters, received_at=datetime(2026, 11, 24, 9, 30, tzinfo=UTC))
    assert result.appended == 0
    first, second = store.dead_letters()
    assert (first.reason, first.detail, first.raw, first.raw_size) == (
        "malformed",
        "not JSON",
        b"{",
        1,
    )
    assert (len(second.raw), second.raw_size) == (DEAD_LETTER_RAW_LIMIT, len(huge))
    assert first.received_at == datetime(2026, 11, 24, 9, 30, tzinfo=UTC)
    assert store.dead_letters(after_id=first.id) == [second]


def test_events_and_dead_letters_of_one_message_commit_together(store: EventStore) -> None:
    """A message's good events and its rejections land in the same append."""
    events = device_stream("HP-000001", 3)
    letter = DeadLetter(
        "coreline/v1/devices/HP-000001/events",
        Rejection(RejectionReason.SCHEMA, "bad", b"{}", "HP-000001", 4),
    )
    result = store.append(events, [letter])
    assert result.appended == 3
    assert [d.seq for d in store.dead_letters()] == [4]


def test_heartbeats_are_recorded(store: EventStore) -> None:
    """Telemetry samples are stored and read back newest first."""
    beats = [
        Heartbeat.model_validate(
            {
                "device_id": "HP-000001",
                "sampled_at": f"2026-11-24T09:0{i}:00.000Z",
                "battery_pct": 90 - i,
            }
        )
        for i in range(3)
    ]
    store.record_heartbeats(beats)
    latest = store.latest_heartbeats("HP-000001", limit=2)
    assert [beat.battery_pct for beat in latest] == [88, 89]
    assert store.latest_heartbeats("HP-000002") == []


def test_newest_heartbeats_of_many_devices_match_each_device_asked_alone(
    store: EventStore,
) -> None:
    """One read for many devices answers what asking each device alone does: its
    newest sample, and nothing for a device never heard."""
    rng = random.Random(7)
    devices = [f"HP-{n:06d}" for n in range(1, 9)]
    beats = [
        Heartbeat.model_validate(
            {
                "device_id": device,
                "sampled_at": f"2026-11-24T09:{minute:02d}:{rng.randrange(60):02d}.000Z",
                "battery_pct": rng.randrange(100),
                "rssi_dbm": -rng.randrange(40, 90),
            }
        )
        for device in devices[:6]
        for minute in rng.sample(range(60), 5)
    ]
    store.record_heartbeats(beats)
    asked = [*devices, "HP-999999"]
    newest = store.newest_heartbeats(asked)
    one_by_one = {
        device: latest[0] for device in asked if (latest := store.latest_heartbeats(device, 1))
    }
    assert newest == one_by_one
    assert sorted(newest) == devices[:6]
    assert store.newest_heartbeats([]) == {}
    assert store.newest_heartbeats(devices[2:3]) == {devices[2]: one_by_one[devices[2]]}


@pytest.mark.parametrize("statement", ["UPDATE events SET seq = seq + 100", "DELETE FROM events"])
def test_stored_events_cannot_be_changed(store_url: str, store: EventStore, statement: str) -> None:
    """The database itself refuses UPDATE and DELETE of events: append-only is enforced."""
    store.append(device_stream("HP-000001", 3))
    with pytest.raises(Exception, match="append-only"):
        _execute_raw(store_url, statement)
    assert len(store.read_stream("HP-000001")) == 3


def _execute_raw(url: str, statement: str) -> None:
    if url.startswith("sqlite:///"):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as sqlite_connection:
            sqlite_connection.execute(statement)
        return
    with psycopg.connect(url) as connection:
        connection.execute(statement)
