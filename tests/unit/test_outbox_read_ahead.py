"""A backlog is read from the file ahead of the link, on a second connection in a
reader thread: what it serves is the file's bytes under every cursor the link may
move to, nothing read before a re-base is ever served after it, and what it holds
is bounded."""

import threading
from datetime import UTC, datetime
from pathlib import Path

import orjson

from edge_agent.custody import AckVerdict
from edge_agent.device import DeviceReading
from edge_agent.outbox import Outbox, OutboxBatch
from tests.support.outbox_batches import drained, punch_readings
from tests.support.streams import device_stream

DEVICE = "HP-000001"
NOW = datetime(2026, 11, 30, 18, 0, tzinfo=UTC)


def _punches(first: int, last: int) -> list[DeviceReading]:
    return punch_readings(first, last, NOW)


def _backlog(path: Path, count: int) -> None:
    """``count`` events recorded by a process that is gone: only the file has them."""
    recorder = Outbox(path, tail_bytes=0)
    for first in range(1, count + 1, 100):
        recorder.record_many(DEVICE, _punches(first, min(first + 99, count)))
    recorder.close()


def _drain(outbox: Outbox, after_seq: int, max_events: int, max_bytes: int) -> list[OutboxBatch]:
    return drained(outbox, DEVICE, after_seq, max_events, max_bytes)


def _readers() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name.startswith("outbox-read")]


def test_a_backlog_read_ahead_is_the_files_bytes_in_order(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    _backlog(path, 1500)
    outbox = Outbox(path, read_ahead_bytes=64 * 1024)
    batches = _drain(outbox, 0, 100, 30_000)
    assert _readers(), "the backlog is read in a thread of its own"
    wires = [wire for batch in batches for wire in batch.wires]
    assert wires == [entry.wire for entry in outbox.between(DEVICE, 1, 1500)]
    assert [orjson.loads(wire)["seq"] for wire in wires] == list(range(1, 1501))
    for batch in batches:
        assert batch.last_seq - batch.first_seq + 1 == len(batch.wires) <= 100
        assert batch.size == sum(len(wire) + 1 for wire in batch.wires) <= 30_000
    outbox.close()
    assert not _readers(), "closing the outbox ends its reader and its connection"


def test_what_is_read_ahead_stays_within_its_bound(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    _backlog(path, 1200)
    bound = 40 * 1024
    outbox = Outbox(path, read_ahead_bytes=bound)
    after, largest = 0, 0
    while (batch := outbox.next_batch(DEVICE, after, 50, 20_000)) is not None:
        largest = max(largest, outbox.read_ahead_bytes)
        after = batch.last_seq
    assert after == 1200
    assert 0 < largest <= bound + 20_000  # the bound, and at most one batch read now
    outbox.mark_sent(DEVICE, 1, 1200)
    assert outbox.read_ahead_bytes == 0, "sent events are not kept"
    outbox.close()


def test_a_cursor_moved_back_or_forward_reads_what_the_file_holds_there(tmp_path: Path) -> None:
    """A reconnect resumes from the first unsent event, a republish from the
    platform's ack, a resend skips ahead: each is served from its own seq on."""
    path = tmp_path / "outbox.db"
    _backlog(path, 900)
    outbox = Outbox(path, read_ahead_bytes=128 * 1024)
    stored = [entry.wire for entry in outbox.between(DEVICE, 1, 900)]
    for after in (0, 120, 3, 700, 699, 0, 850, 899):
        batch = outbox.next_batch(DEVICE, after, 60, 10**6)
        assert batch is not None
        assert (batch.first_seq, batch.last_seq) == (after + 1, min(after + 60, 900))
        assert batch.wires == stored[after : after + 60]
    assert outbox.next_batch(DEVICE, 900, 60, 10**6) is None
    outbox.close()


def test_nothing_read_before_a_re_base_is_served_after_it(tmp_path: Path) -> None:
    """A re-base gives every stored event a new seq and hash: bytes read ahead of it,
    or being read while it commits, must never go out."""
    path = tmp_path / "outbox.db"
    _backlog(path, 600)
    outbox = Outbox(path, read_ahead_bytes=512 * 1024)
    first = outbox.next_batch(DEVICE, 0, 50, 10**6)
    assert first is not None
    assert outbox.read_ahead_bytes > 0
    platform = device_stream(DEVICE, 700)
    outcome = outbox.acknowledge(DEVICE, 700, platform[-1].hash)
    assert outcome.verdict is AckVerdict.REBASE
    head = outcome.state.head_seq
    assert head > 1300  # the 600 stored events re-sealed after the platform's 700
    wires = [wire for batch in _drain(outbox, 700, 50, 10**6) for wire in batch.wires]
    assert wires == [entry.wire for entry in outbox.between(DEVICE, 701, head)]
    assert [orjson.loads(wire)["seq"] for wire in wires] == list(range(701, head + 1))
    outbox.close()


def test_a_re_base_while_a_read_is_under_way_discards_it(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    _backlog(path, 600)
    outbox = Outbox(path, read_ahead_bytes=512 * 1024)
    stale = outbox.next_batch(DEVICE, 0, 50, 10**6)
    assert stale is not None
    # The read of seq 51 on is under way or done, not yet taken: the re-base comes now.
    platform = device_stream(DEVICE, 10)
    outcome = outbox.acknowledge(DEVICE, 10, platform[-1].hash)
    assert outcome.verdict is AckVerdict.REBASE
    head = outcome.state.head_seq
    batches = _drain(outbox, 10, 50, 10**6)
    wires = [wire for batch in batches for wire in batch.wires]
    assert wires == [entry.wire for entry in outbox.between(DEVICE, 11, head)]
    assert [orjson.loads(wire)["seq"] for wire in wires] == list(range(11, head + 1))
    outbox.close()
