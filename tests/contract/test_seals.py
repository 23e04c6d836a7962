"""Seals are stored append-only beside the events (DESIGN §4.1), in the append's
transaction, on every adapter: each only over an event its stream holds with the
hash it signs."""

from schemas import SealedEvent
from seal_keys import SealKey
from services.eventstore import EventStore, StreamSeal
from tests.support.chains import other_board
from tests.support.streams import device_stream

DEVICE = "HP-000501"
KEY = SealKey.derived("contract")


def _seal_of(event: SealedEvent, key: SealKey = KEY) -> StreamSeal:
    made = key.seal(event.device_id, event.seq, event.hash)
    return StreamSeal(event.stream_id, event.seq, event.hash, made.key_id, made.sig)


def test_a_seal_is_stored_with_its_batch(store: EventStore) -> None:
    """The seal over a batch's last event is stored with it, and read back in seq order."""
    stream = device_stream(DEVICE, 6)
    store.append(stream[:3], seals=[_seal_of(stream[2])])
    store.append(stream[3:], seals=[_seal_of(stream[5])])
    seals = store.read_seals(DEVICE)
    assert [(s.seq, s.key_id, s.sig) for s in seals] == [
        (3, KEY.key_id, _seal_of(stream[2]).sig),
        (6, KEY.key_id, _seal_of(stream[5]).sig),
    ]
    assert [s.seq for s in store.read_seals(DEVICE, from_seq=4)] == [6]
    assert store.read_seals("HP-000502") == []


def test_seals_are_read_a_page_at_a_time(store: EventStore) -> None:
    """``limit`` bounds a read, so a long sealed stream is read in pages."""
    stream = device_stream(DEVICE, 9)
    for end in (3, 6, 9):
        store.append(stream[end - 3 : end], seals=[_seal_of(stream[end - 1])])
    assert [s.seq for s in store.read_seals(DEVICE, limit=2)] == [3, 6]
    assert [s.seq for s in store.read_seals(DEVICE, from_seq=7, limit=2)] == [9]
    assert [s.seq for s in store.read_seals(DEVICE, from_seq=4, limit=1)] == [6]


def test_a_resent_batch_keeps_the_first_seal(store: EventStore) -> None:
    """A resend (the same events, sealed again by another key) is a duplicate, and the
    seal stored first stays."""
    stream = device_stream(DEVICE, 4)
    store.append(stream, seals=[_seal_of(stream[3])])
    result = store.append(stream, seals=[_seal_of(stream[3], SealKey.derived("other"))])
    assert result.duplicates == 4
    (kept,) = store.read_seals(DEVICE)
    assert kept.key_id == KEY.key_id


def test_a_seal_over_a_refused_event_is_not_stored(store: EventStore) -> None:
    """A conflicting event is dead-lettered, and the seal over it goes with it."""
    stream = device_stream(DEVICE, 4)
    store.append(stream)
    board = other_board(stream, 3)
    result = store.append(board[2:], seals=[_seal_of(board[3])])
    assert len(result.rejected) == 2
    assert store.read_seals(DEVICE) == []


def test_a_seal_over_a_held_event_waits_with_it(store: EventStore) -> None:
    """An event held past a hole keeps its seal; once the hole fills, the stream's
    seals are those of both batches."""
    stream = device_stream(DEVICE, 6)
    held = store.append(stream[3:], seals=[_seal_of(stream[5])])
    assert held.held == 3
    store.append(stream[:3], seals=[_seal_of(stream[2])])
    assert [s.seq for s in store.read_seals(DEVICE)] == [3, 6]
    assert [e.seq for e in store.read_stream(DEVICE)] == [1, 2, 3, 4, 5, 6]


def test_a_seal_naming_another_hash_is_not_stored(store: EventStore) -> None:
    """A seal whose hash is not the stored event's never lands (the gateway verified
    it over the batch's event; the store holds it to the one it keeps)."""
    stream = device_stream(DEVICE, 2)
    forged = StreamSeal(DEVICE, 2, "f" * 64, KEY.key_id, _seal_of(stream[1]).sig)
    store.append(stream, seals=[forged])
    assert store.read_seals(DEVICE) == []
