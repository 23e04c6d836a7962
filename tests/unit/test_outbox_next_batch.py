"""The link's next batch: the events just recorded are served from memory, a backlog
from the file, and both give the same bytes, in seq order, within the batch limits."""

from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from edge_agent.custody import AckVerdict
from edge_agent.device import DeviceReading
from edge_agent.outbox import InvalidReadingError, Outbox, OutboxBatch
from edge_agent.publisher import batch_payload
from schemas import decode_event_batch
from tests.support.outbox_batches import drained, punch_readings
from tests.support.streams import device_stream, punch_data

DEVICE = "HP-000001"
NOW = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)


def _punches(first: int, last: int) -> list[DeviceReading]:
    return punch_readings(first, last, NOW)


def _drain(outbox: Outbox, after_seq: int, max_events: int, max_bytes: int) -> list[OutboxBatch]:
    return drained(outbox, DEVICE, after_seq, max_events, max_bytes)


def _shape(batches: list[OutboxBatch]) -> list[tuple[int, int, list[bytes]]]:
    return [(batch.first_seq, batch.last_seq, batch.wires) for batch in batches]


def test_batches_from_memory_and_from_the_file_are_the_same(tmp_path: Path) -> None:
    """The recording process serves its tail from memory; a restarted one reads the
    file: same batches, byte for byte, whatever the cursor."""
    path = tmp_path / "outbox.db"
    live = Outbox(path)
    live.record_many(DEVICE, _punches(1, 120))
    live.record_many(DEVICE, _punches(121, 130))
    one = len(live.between(DEVICE, 1, 1)[0].wire) + 1
    restarted = Outbox(path)
    assert live.tail_events(DEVICE) == 130
    assert restarted.tail_events(DEVICE) == 0
    for after in (0, 1, 57, 129):
        for max_events, max_bytes in ((500, 10**6), (7, 10**6), (500, 11 * one), (500, 1)):
            ours = _drain(live, after, max_events, max_bytes)
            assert _shape(ours) == _shape(_drain(restarted, after, max_events, max_bytes))
            assert ours[0].first_seq == after + 1
            assert ours[-1].last_seq == 130
            for batch in ours:
                assert batch.size == sum(len(wire) + 1 for wire in batch.wires)
                assert batch.last_seq - batch.first_seq + 1 == len(batch.wires)
                assert len(batch.wires) <= max_events
                assert batch.size <= max_bytes or len(batch.wires) == 1  # one always goes
    stored = [entry.wire for entry in restarted.between(DEVICE, 1, 130)]
    assert [wire for batch in _drain(live, 0, 50, 10**6) for wire in batch.wires] == stored


def test_events_of_very_different_sizes_fill_batches_alike_from_either(tmp_path: Path) -> None:
    """Reading from the file guesses how many rows the byte limit takes from the
    last batch's sizes; a wrong guess still gives full batches."""
    path = tmp_path / "outbox.db"
    live = Outbox(path)
    fault = {"fault_code": "E-TEST", "severity": "warning", "message": "x" * 1900}
    live.record_many(DEVICE, [DeviceReading("fault.raised", NOW, fault)] * 6)
    live.record_many(DEVICE, _punches(7, 200))
    live.record_many(DEVICE, [DeviceReading("fault.raised", NOW, fault)] * 6)
    restarted = Outbox(path)
    for max_events, max_bytes in ((500, 9_000), (40, 30_000), (500, 60_000)):
        assert _shape(_drain(live, 0, max_events, max_bytes)) == _shape(
            _drain(restarted, 0, max_events, max_bytes)
        )


def test_a_batch_payload_decodes_upstream_as_the_stored_events(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox.db")
    outbox.record_many(DEVICE, _punches(1, 9))
    batch = outbox.next_batch(DEVICE, 0, 500, 10**6)
    assert batch is not None
    decoded = decode_event_batch(DEVICE, batch_payload(DEVICE, batch))
    assert not decoded.rejections
    assert [event.seq for event in decoded.events] == list(range(1, 10))
    alone = outbox.next_batch(DEVICE, 4, 1, 10**6)
    assert alone is not None
    decoded = decode_event_batch(DEVICE, batch_payload(DEVICE, alone))
    assert [event.seq for event in decoded.events] == [5]
    assert batch_payload(DEVICE, []) == b'{"device_id":"HP-000001","events":[]}'


def test_the_tail_in_memory_is_bounded_and_the_rest_is_read_from_the_file(
    tmp_path: Path,
) -> None:
    outbox = Outbox(tmp_path / "outbox.db", tail_bytes=20_000)
    for first in range(1, 400, 50):
        outbox.record_many(DEVICE, _punches(first, first + 49))
    assert 0 < outbox.tail_events(DEVICE) < 400
    assert outbox.tail_bytes <= 20_000
    wires = [wire for batch in _drain(outbox, 0, 64, 10**6) for wire in batch.wires]
    assert wires == [entry.wire for entry in outbox.between(DEVICE, 1, 400)]


def test_sent_events_leave_the_tail(tmp_path: Path) -> None:
    """Once the broker has them they are read from the file, if ever again."""
    outbox = Outbox(tmp_path / "outbox.db")
    outbox.record_many(DEVICE, _punches(1, 30))
    before = outbox.tail_bytes
    outbox.mark_sent(DEVICE, 1, 20)
    assert outbox.tail_events(DEVICE) == 10
    assert 0 < outbox.tail_bytes < before
    again = outbox.next_batch(DEVICE, 0, 500, 10**6)  # a republish from the ack
    assert again is not None
    assert (again.first_seq, again.last_seq) == (1, 30)


def test_a_refused_reading_leaves_nothing_in_memory(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox.db")
    outbox.record_many(DEVICE, _punches(1, 3))
    bad = DeviceReading("cores.punched", NOW, {**punch_data(5), "actuations": 0})
    with pytest.raises(InvalidReadingError):
        outbox.record_many(DEVICE, [*_punches(4, 4), bad])
    assert outbox.tail_events(DEVICE) == 3
    batch = outbox.next_batch(DEVICE, 0, 500, 10**6)
    assert batch is not None
    assert batch.last_seq == 3
    assert outbox.next_batch(DEVICE, 3, 500, 10**6) is None


def test_a_rebased_chain_is_read_as_re_sealed(tmp_path: Path) -> None:
    """Re-basing gives the events new seqs and hashes: the old bytes in memory must
    never go out under them."""
    outbox = Outbox(tmp_path / "outbox.db")
    outbox.record_many(DEVICE, _punches(1, 5))
    platform = device_stream(DEVICE, 40)
    assert outbox.acknowledge(DEVICE, 40, platform[-1].hash).verdict is AckVerdict.REBASE
    outbox.record_many(DEVICE, _punches(6, 8))
    wires = [wire for batch in _drain(outbox, 40, 500, 10**6) for wire in batch.wires]
    assert wires == [entry.wire for entry in outbox.between(DEVICE, 41, 49)]
    assert [orjson.loads(wire)["seq"] for wire in wires] == list(range(41, 50))
    assert outbox.next_batch(DEVICE, 0, 500, 10**6) is not None  # the file's, from 41


def _wal_bytes(path: Path) -> int:
    return Path(f"{path}-wal").stat().st_size


def test_the_log_is_checkpointed_after_recording_and_after_many_commits(tmp_path: Path) -> None:
    """Sent marks never pay for copying what was recorded, yet the write-ahead log
    stays bounded whether the file is written by recording or by marks alone."""
    path = tmp_path / "outbox.db"
    outbox = Outbox(path, tail_bytes=0)
    recorded = 0
    for first in range(1, 16_000, 500):
        recorded += sum(
            len(e.body) for e in outbox.record_many(DEVICE, _punches(first, first + 499))
        )
    assert recorded > 7_000_000
    assert _wal_bytes(path) < 6_500_000  # one log of them all would be larger
    before = _wal_bytes(path)
    for seq in range(1, 1_501):
        outbox.mark_sent(DEVICE, seq, seq)  # a few frames a commit, thousands in all
    assert _wal_bytes(path) <= max(before, 4_000_000)
    assert outbox.first_unsent_seq(DEVICE) == 1_501
