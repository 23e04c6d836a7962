"""The outbox's sent watermark: a PUBACKed batch moves one number, spans acknowledged
out of order join it once the gap closes, and a file that marked each row sent
migrates to it with its sent prefix and resend windows intact."""

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

from edge_agent import outbox_schema
from edge_agent.device import DeviceReading
from edge_agent.outbox import Outbox
from tests.support.streams import device_stream, punch_data

DEVICE = "HP-000001"
NOW = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)


def _punches(count: int) -> list[DeviceReading]:
    return [DeviceReading("cores.punched", NOW, punch_data(n)) for n in range(1, count + 1)]


def _rows_with_sent_at(path: Path) -> int:
    with sqlite3.connect(path) as connection:
        return int(
            connection.execute("SELECT count(*) FROM outbox WHERE sent_at IS NOT NULL").fetchone()[
                0
            ]
        )


def test_a_puback_moves_the_watermark_without_touching_the_events(tmp_path: Path) -> None:
    """Marking 500 events sent writes no event row; they count as sent all the same."""
    outbox = Outbox(tmp_path / "outbox.db")
    outbox.record_many(DEVICE, _punches(600))
    outbox.mark_sent(DEVICE, 1, 500)
    assert outbox.first_unsent_seq(DEVICE) == 501
    assert outbox.stats().unsent == 100
    assert [entry.seq for entry in outbox.unsent(DEVICE, max_events=2)] == [501, 502]
    assert _rows_with_sent_at(tmp_path / "outbox.db") == 0


def test_a_span_acknowledged_before_the_one_ahead_of_it_joins_when_the_gap_closes(
    tmp_path: Path,
) -> None:
    """A PUBACK for 11..20 while 1..10 is still in flight leaves 1..20 unsent; once
    1..10 is PUBACKed both count as sent, and a repeated mark changes nothing."""
    outbox = Outbox(tmp_path / "outbox.db")
    outbox.record_many(DEVICE, _punches(30))
    outbox.mark_sent(DEVICE, 11, 20)
    assert outbox.first_unsent_seq(DEVICE) == 1
    outbox.mark_sent(DEVICE, 1, 10)
    assert outbox.first_unsent_seq(DEVICE) == 21
    outbox.mark_sent(DEVICE, 5, 15)  # a republished span, PUBACKed again
    assert outbox.first_unsent_seq(DEVICE) == 21
    assert outbox.stats().unsent == 10


def test_the_resend_window_runs_from_each_batchs_own_send_time(tmp_path: Path) -> None:
    """Acknowledged events go once the window has passed since *their* batch was
    sent: a later batch's events stay until its own window has passed."""
    outbox = Outbox(tmp_path / "outbox.db", resend_window=timedelta(hours=1))
    outbox.anchor(DEVICE)
    sealed = outbox.record_many(DEVICE, _punches(10))
    outbox.mark_sent(DEVICE, 1, 5)
    with sqlite3.connect(tmp_path / "outbox.db") as connection:  # sent two hours ago
        connection.execute(
            "UPDATE sent_marks SET sent_at = '2000-01-01T00:00:00.000Z' WHERE through_seq = 5"
        )
    outbox.mark_sent(DEVICE, 6, 10)
    outbox.acknowledge(DEVICE, 10, sealed[-1].hash)
    outbox.enforce_limits([DEVICE], now=datetime.now(UTC) + timedelta(minutes=30))
    assert [entry.seq for entry in outbox.between(DEVICE, 1, 10)] == list(range(6, 11))
    outbox.enforce_limits([DEVICE], now=datetime.now(UTC) + timedelta(hours=2))
    assert outbox.between(DEVICE, 1, 10) == []
    assert outbox.stats().stored == 0


def test_a_file_that_marked_each_row_sent_migrates_to_the_watermark(tmp_path: Path) -> None:
    """A version 3 file (``sent_at`` per row): the sent prefix becomes the watermark,
    an event sent past a gap counts as unsent (it goes again), and the rows' send
    times keep dating their resend windows."""
    path = tmp_path / "outbox.db"
    old = sqlite3.connect(path, isolation_level=None)
    for step in outbox_schema._STEPS[:3]:  # the layout of version 3
        for statement in step:
            old.execute(statement)
    old.execute("PRAGMA user_version = 3")
    stream = device_stream(DEVICE, 6)
    long_ago, lately = "2000-01-01T00:00:00.000Z", "2999-01-01T00:00:00.000Z"
    sent_at = {1: long_ago, 2: long_ago, 3: lately, 4: None, 5: lately, 6: None}
    old.executemany(
        "INSERT INTO outbox VALUES (?, ?, ?, '2026-11-24T09:00:00.000Z', ?)",
        [
            (DEVICE, e.seq, e.body[:-1] + b',"hash":"' + e.hash.encode() + b'"}', sent_at[e.seq])
            for e in stream
        ],
    )
    old.execute(
        "INSERT INTO chain_heads (device_id, last_seq, last_hash, acked_seq, anchored) "
        "VALUES (?, 6, ?, 3, 1)",
        (DEVICE, stream[-1].hash),
    )
    old.close()
    outbox = Outbox(path, resend_window=timedelta(hours=1))
    assert outbox.first_unsent_seq(DEVICE) == 4
    assert outbox.stats().unsent == 3
    outbox.enforce_limits([DEVICE])  # 1 and 2 were sent long ago; 3 only lately
    assert [entry.seq for entry in outbox.between(DEVICE, 1, 6)] == [3, 4, 5, 6]
    assert outbox.delivery_state(DEVICE).acked_seq == 3
    outbox.close()
    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA user_version").fetchone()[0] == 4
