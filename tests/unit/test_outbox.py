"""The durable outbox: sequence and chain assigned atomically, resend window and
disk budget that never cost an unsent event."""

import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from edge_agent.device import DeviceReading
from edge_agent.outbox import OUTBOX_FULL_FAULT, InvalidReadingError, Outbox
from schemas import GENESIS_HASH
from schemas.chain import ChainStatus, link_of_wire_event, verify_chain
from tests.support.streams import punch_data

NOW = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)


def _punch(seq: int = 1) -> DeviceReading:
    return DeviceReading("cores.punched", NOW, punch_data(seq))


def _verdict(outbox: Outbox, device_id: str) -> ChainStatus:
    head = outbox.head(device_id)[0]
    entries = outbox.between(device_id, 1, head)
    return verify_chain(link_of_wire_event(orjson.loads(e.wire)) for e in entries).status


@pytest.fixture
def outbox(tmp_path: Path) -> Outbox:
    return Outbox(tmp_path / "outbox.db")


def test_events_get_consecutive_seqs_and_one_chain(outbox: Outbox) -> None:
    """Recorded events get consecutive seqs from 1 and form one verified chain."""
    first = outbox.record("HP-000001", _punch())
    assert (first.seq, first.prev_hash) == (1, GENESIS_HASH)
    rest = outbox.record_many("HP-000001", [_punch(n) for n in range(2, 12)])
    assert [event.seq for event in rest] == list(range(2, 12))
    assert outbox.head("HP-000001") == (11, rest[-1].hash)
    assert _verdict(outbox, "HP-000001") is ChainStatus.VERIFIED


def test_devices_sharing_a_file_keep_separate_chains(outbox: Outbox) -> None:
    """Devices sharing one outbox file each get their own seqs and verified chain."""
    sealed = outbox.record_fleet({"HP-000001": [_punch()] * 3, "HP-000002": [_punch()] * 2})
    assert [e.seq for e in sealed["HP-000001"]] == [1, 2, 3]
    assert [e.seq for e in sealed["HP-000002"]] == [1, 2]
    assert _verdict(outbox, "HP-000001") is ChainStatus.VERIFIED
    assert _verdict(outbox, "HP-000002") is ChainStatus.VERIFIED


def test_an_invalid_reading_is_refused_and_nothing_of_its_batch_is_kept(outbox: Outbox) -> None:
    """An invalid reading is refused with its seq and field, and nothing of its batch is kept."""
    outbox.record("HP-000001", _punch())
    bad = DeviceReading("cores.punched", NOW, {**punch_data(2), "actuations": 0})
    with pytest.raises(InvalidReadingError, match=r"cores\.punched .*seq 3.*actuations"):
        outbox.record_many("HP-000001", [_punch(2), bad])
    assert outbox.head("HP-000001")[0] == 1
    assert outbox.stats().stored == 1


def test_unsent_respects_order_limits_and_acknowledgements(outbox: Outbox) -> None:
    """Unsent events come in seq order within count and byte limits, skipping acknowledged ones."""
    outbox.record_many("HP-000001", [_punch(n) for n in range(1, 21)])
    assert [e.seq for e in outbox.unsent("HP-000001", max_events=5)] == [1, 2, 3, 4, 5]
    one_event = len(outbox.unsent("HP-000001", max_events=1)[0].wire)
    limited = outbox.unsent("HP-000001", max_bytes=3 * (one_event + 1))
    assert [e.seq for e in limited] == [1, 2, 3]
    outbox.mark_sent("HP-000001", 1, 10)
    assert outbox.first_unsent_seq("HP-000001") == 11
    assert [e.seq for e in outbox.unsent("HP-000001", after_seq=15)] == [16, 17, 18, 19, 20]
    assert outbox.stats().unsent == 10
    # Sent events are still there to answer resends, byte for byte.
    assert [e.seq for e in outbox.between("HP-000001", 4, 6)] == [4, 5, 6]


def test_sent_events_leave_after_the_resend_window_unsent_ones_never(tmp_path: Path) -> None:
    """Sent events are pruned once past the resend window; unsent ones never are."""
    outbox = Outbox(tmp_path / "outbox.db", resend_window=timedelta(hours=1))
    outbox.record_many("HP-000001", [_punch(n) for n in range(1, 11)])
    outbox.mark_sent("HP-000001", 1, 6)
    outbox.enforce_limits(["HP-000001"], now=datetime.now(UTC) + timedelta(minutes=30))
    assert outbox.stats().stored == 10
    outbox.enforce_limits(["HP-000001"], now=datetime.now(UTC) + timedelta(hours=2))
    assert outbox.stats().stored == 4
    assert [e.seq for e in outbox.unsent("HP-000001")] == [7, 8, 9, 10]


def test_over_budget_the_outbox_keeps_everything_and_says_so_once(tmp_path: Path) -> None:
    """Over budget the outbox drops nothing, raises one fault, and clears it once drained."""
    outbox = Outbox(tmp_path / "outbox.db", budget_bytes=64 * 1024)
    outbox.record_many("HP-000001", [_punch(n) for n in range(1, 301)])
    outbox.enforce_limits(["HP-000001"])
    outbox.enforce_limits(["HP-000001"])  # a second check raises no second fault
    faults = [
        orjson.loads(e.wire)
        for e in outbox.between("HP-000001", 301, 400)
        if orjson.loads(e.wire)["type"].startswith("fault.")
    ]
    assert [(f["type"], f["data"]["fault_code"]) for f in faults] == [
        ("fault.raised", OUTBOX_FULL_FAULT)
    ]
    assert outbox.stats().unsent == 301  # nothing dropped; the fault is an event too
    # Once the backlog is delivered and pruned, the fault clears.
    outbox.mark_sent("HP-000001", 1, 301)
    outbox.enforce_limits(["HP-000001"], now=datetime.now(UTC) + timedelta(days=30))
    last = orjson.loads(outbox.between("HP-000001", 302, 302)[0].wire)
    assert (last["type"], last["data"]["fault_code"]) == ("fault.cleared", OUTBOX_FULL_FAULT)
    assert _verdict_tail_ok(outbox)


def _verdict_tail_ok(outbox: Outbox) -> bool:
    """After pruning, the remaining events still chain onto each other."""
    head = outbox.head("HP-000001")[0]
    entries = [orjson.loads(e.wire) for e in outbox.between("HP-000001", 1, head)]
    return all(b["prev_hash"] == a["hash"] for a, b in itertools.pairwise(entries))
