"""The durable outbox: sequence and chain assigned atomically, a watermark only a
hash-checked platform ack moves, re-sync after a lost chain, and a resend window and
disk budget that never cost an unacknowledged event."""

import itertools
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from edge_agent.custody import CHAIN_MISMATCH_FAULT, AckVerdict
from edge_agent.device import DeviceReading
from edge_agent.outbox import OUTBOX_FULL_FAULT, InvalidReadingError, Outbox
from schemas import GENESIS_HASH, decode_event_batch
from schemas.chain import ChainStatus, link_of_wire_event, verify_chain
from tests.support.streams import device_stream, punch_data

DEVICE = "HP-000001"

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


def _events(outbox: Outbox, device_id: str = DEVICE) -> list[dict[str, Any]]:
    head = outbox.head(device_id)[0]
    return [orjson.loads(entry.wire) for entry in outbox.between(device_id, 1, head)]


def _faults(outbox: Outbox, code: str) -> list[tuple[str, dict[str, Any]]]:
    return [
        (event["type"], event["data"])
        for event in _events(outbox)
        if event["type"].startswith("fault.") and event["data"]["fault_code"] == code
    ]


def _acknowledge_all(outbox: Outbox, device_id: str = DEVICE) -> None:
    head_seq, head_hash = outbox.head(device_id)
    outcome = outbox.acknowledge(device_id, head_seq, head_hash)
    assert outcome.verdict is AckVerdict.ADVANCE


@pytest.fixture
def anchored(outbox: Outbox) -> Outbox:
    """An outbox whose device chain is anchored at genesis, as a new device's is."""
    outbox.anchor(DEVICE)
    return outbox


def test_only_a_matching_ack_moves_the_watermark(anchored: Outbox) -> None:
    """A platform ack whose hash matches the device's own moves the watermark and
    counts the covered events as sent; older acks never move it back."""
    sealed = anchored.record_many(DEVICE, [_punch(n) for n in range(1, 11)])
    outcome = anchored.acknowledge(DEVICE, 6, sealed[5].hash)
    assert outcome.verdict is AckVerdict.ADVANCE
    assert (outcome.state.acked_seq, anchored.delivery_state(DEVICE).acked_seq) == (6, 6)
    assert anchored.first_unsent_seq(DEVICE) == 7  # covered without a PUBACK: sent
    assert anchored.stats().unacknowledged == 4
    assert anchored.acknowledge(DEVICE, 3, sealed[2].hash).verdict is AckVerdict.STALE
    assert anchored.delivery_state(DEVICE).acked_seq == 6


def test_sent_events_stay_until_acknowledged_and_past_the_resend_window(tmp_path: Path) -> None:
    """Sent events are pruned only once acknowledged and past the resend window;
    sent but unacknowledged ones stay however old they are."""
    outbox = Outbox(tmp_path / "outbox.db", resend_window=timedelta(hours=1))
    outbox.anchor(DEVICE)
    sealed = outbox.record_many(DEVICE, [_punch(n) for n in range(1, 11)])
    outbox.mark_sent(DEVICE, 1, 8)
    outbox.enforce_limits([DEVICE], now=datetime.now(UTC) + timedelta(hours=2))
    assert outbox.stats().stored == 10  # PUBACKed is not delivered
    outbox.acknowledge(DEVICE, 6, sealed[5].hash)
    outbox.enforce_limits([DEVICE], now=datetime.now(UTC) + timedelta(minutes=30))
    assert outbox.stats().stored == 10  # acknowledged, but within the window
    outbox.enforce_limits([DEVICE], now=datetime.now(UTC) + timedelta(hours=2))
    assert [e.seq for e in outbox.between(DEVICE, 1, 10)] == [7, 8, 9, 10]
    assert [e.seq for e in outbox.unsent(DEVICE)] == [9, 10]


def test_over_budget_only_acknowledged_events_go_and_the_fault_is_raised_once(
    tmp_path: Path,
) -> None:
    """Over budget the outbox drops acknowledged events first (whatever their age),
    never an unacknowledged one; with only those left it raises one fault, which
    clears once acknowledged events can be pruned again."""
    outbox = Outbox(tmp_path / "outbox.db", budget_bytes=64 * 1024)
    outbox.anchor(DEVICE)
    outbox.record_many(DEVICE, [_punch(n) for n in range(1, 301)])
    outbox.mark_sent(DEVICE, 1, 300)  # PUBACKed, never acknowledged
    outbox.enforce_limits([DEVICE])
    outbox.enforce_limits([DEVICE])  # a second check raises no second fault
    assert [kind for kind, _ in _faults(outbox, OUTBOX_FULL_FAULT)] == ["fault.raised"]
    assert outbox.stats().stored == 301  # nothing dropped; the fault is an event too
    _acknowledge_all(outbox)
    outbox.enforce_limits([DEVICE])  # within the window, but over budget: pruned
    last = orjson.loads(outbox.between(DEVICE, 302, 302)[0].wire)
    assert (last["type"], last["data"]["fault_code"]) == ("fault.cleared", OUTBOX_FULL_FAULT)
    assert outbox.stats().stored < 100
    assert _verdict_tail_ok(outbox)


def test_the_budget_fault_is_not_raised_again_by_a_restart_and_clears_after_one(
    tmp_path: Path,
) -> None:
    """An E-OUTBOX-FULL episode survives a restart: reopening an outbox still over
    budget raises nothing new, and the reopened outbox clears the fault once it can."""
    path = tmp_path / "outbox.db"
    outbox = Outbox(path, budget_bytes=64 * 1024)
    outbox.anchor(DEVICE)
    outbox.record_many(DEVICE, [_punch(n) for n in range(1, 301)])
    outbox.enforce_limits([DEVICE])
    outbox.close()
    for _ in range(2):  # two agent starts, each checking the budget at once
        restarted = Outbox(path, budget_bytes=64 * 1024)
        restarted.enforce_limits([DEVICE])
        restarted.close()
    restarted = Outbox(path, budget_bytes=64 * 1024)
    assert [kind for kind, _ in _faults(restarted, OUTBOX_FULL_FAULT)] == ["fault.raised"]
    _acknowledge_all(restarted)
    restarted.enforce_limits([DEVICE], now=datetime.now(UTC) + timedelta(days=30))
    kinds = [kind for kind, _ in _faults(restarted, OUTBOX_FULL_FAULT)]
    assert kinds[-1] == "fault.cleared"


def test_an_outbox_within_budget_raises_no_fault(tmp_path: Path) -> None:
    """Starting an agent on an outbox well within its budget records no fault at all."""
    outbox = Outbox(tmp_path / "outbox.db", budget_bytes=1024 * 1024)
    outbox.record_many(DEVICE, [_punch(n) for n in range(1, 20)])
    for _ in range(3):
        outbox.enforce_limits([DEVICE])
    assert _faults(outbox, OUTBOX_FULL_FAULT) == []


def _verdict_tail_ok(outbox: Outbox) -> bool:
    """After pruning, the remaining events still chain onto each other."""
    entries = _events(outbox)
    return all(b["prev_hash"] == a["hash"] for a, b in itertools.pairwise(entries))


def test_a_fresh_outbox_is_unanchored_until_the_platform_has_its_say(outbox: Outbox) -> None:
    """A fresh outbox records offline from seq 1 but is unanchored; an ack of 0 (the
    platform holds nothing) anchors it at genesis with its events unchanged."""
    sealed = outbox.record_many(DEVICE, [_punch(n) for n in range(1, 4)])
    assert not outbox.delivery_state(DEVICE).anchored
    outcome = outbox.acknowledge(DEVICE, 0, GENESIS_HASH)
    assert outcome.verdict is AckVerdict.ANCHOR
    assert outcome.state.anchored
    assert [e["hash"] for e in _events(outbox)] == [event.hash for event in sealed]


def test_anchoring_without_an_ack_keeps_the_chain_and_survives_a_restart(tmp_path: Path) -> None:
    """``anchor`` (no ack within the bound) anchors at genesis, persistently, even
    before the device's first event."""
    outbox = Outbox(tmp_path / "outbox.db")
    assert outbox.anchor(DEVICE).anchored
    outbox.close()
    reopened = Outbox(tmp_path / "outbox.db")
    assert reopened.delivery_state(DEVICE).anchored
    assert reopened.record(DEVICE, _punch()).seq == 1


def test_a_lost_chain_continues_after_the_platforms_head(outbox: Outbox) -> None:
    """An unanchored outbox told the platform holds seq N re-bases in one go:
    ``agent.resynced`` at N+1 linking to the platform's hash, then every local event
    re-sealed after it (same id, type, time and data), one valid chain."""
    platform = device_stream(DEVICE, 40)
    local = outbox.record_many(DEVICE, [_punch(n) for n in range(1, 6)])
    outcome = outbox.acknowledge(DEVICE, 40, platform[-1].hash)
    assert outcome.verdict is AckVerdict.REBASE
    events = _events(outbox)
    assert [e["seq"] for e in events] == list(range(41, 47))
    resynced, resealed = events[0], events[1:]
    assert resynced["type"] == "agent.resynced"
    assert resynced["data"] == {"from_seq": 40, "reason": "state_lost"}
    assert resynced["prev_hash"] == platform[-1].hash
    before = [orjson.loads(e.body) for e in local]
    assert [(e["event_id"], e["type"], e["occurred_at"], e["data"]) for e in resealed] == [
        (e["event_id"], e["type"], e["occurred_at"], e["data"]) for e in before
    ]
    links = [link_of_wire_event(orjson.loads(s.body) | {"hash": s.hash}) for s in platform]
    verdict = verify_chain([*links, *(link_of_wire_event(e) for e in events)])
    assert verdict.status is ChainStatus.VERIFIED, verdict.problem
    state = outcome.state
    assert (state.head_seq, state.head_hash) == (46, events[-1]["hash"])
    assert (state.acked_seq, state.anchored) == (40, True)
    # Recording goes on after the re-based head, and the batch decodes upstream.
    assert outbox.record(DEVICE, _punch(6)).seq == 47
    batch = b'{"device_id":"' + DEVICE.encode() + b'","events":['
    batch += b",".join(e.wire for e in outbox.between(DEVICE, 41, 47)) + b"]}"
    assert not decode_event_batch(DEVICE, batch).rejections


def test_an_empty_fresh_outbox_rebases_onto_the_platform_head(outbox: Outbox) -> None:
    """A wiped board with nothing recorded yet starts with ``agent.resynced`` at N+1."""
    platform = device_stream(DEVICE, 7)
    outbox.acknowledge(DEVICE, 7, platform[-1].hash)
    (event,) = _events(outbox)
    assert (event["seq"], event["type"], event["prev_hash"]) == (
        8, "agent.resynced", platform[-1].hash,
    )  # fmt: skip


def test_an_anchored_chain_is_never_rebased(anchored: Outbox) -> None:
    """An anchored chain told the platform holds more than its head (another board on
    the id, or a restored platform) raises the mismatch fault and keeps its chain."""
    sealed = anchored.record_many(DEVICE, [_punch(n) for n in range(1, 6)])
    anchored.acknowledge(DEVICE, 2, sealed[1].hash)
    outcome = anchored.acknowledge(DEVICE, 9, "ab" * 32)
    assert (outcome.verdict, outcome.recorded) == (AckVerdict.MISMATCH, True)
    assert [e["seq"] for e in _events(anchored)] == [1, 2, 3, 4, 5, 6]
    (fault,) = _faults(anchored, CHAIN_MISMATCH_FAULT)
    assert "seq 9" in fault[1]["message"]
    assert "past this device's head, seq 5" in fault[1]["message"]
    assert anchored.delivery_state(DEVICE).acked_seq == 2


def test_a_mismatching_ack_raises_one_critical_fault_and_moves_nothing(tmp_path: Path) -> None:
    """An ack whose hash differs from the device's chain at that seq records one
    E-CHAIN-MISMATCH fault naming the seq, once per distinct ack even across a
    restart, and leaves the watermark where it was."""
    path = tmp_path / "outbox.db"
    outbox = Outbox(path)
    outbox.anchor(DEVICE)
    outbox.record_many(DEVICE, [_punch(n) for n in range(1, 11)])
    first = outbox.acknowledge(DEVICE, 5, "f" * 64)
    again = outbox.acknowledge(DEVICE, 5, "f" * 64)
    assert (first.verdict, first.recorded, again.recorded) == (AckVerdict.MISMATCH, True, False)
    outbox.close()
    outbox = Outbox(path)
    assert not outbox.acknowledge(DEVICE, 5, "f" * 64).recorded  # the retained ack, redelivered
    assert outbox.acknowledge(DEVICE, 6, "e" * 64).recorded  # another mismatching ack
    faults = _faults(outbox, CHAIN_MISMATCH_FAULT)
    assert [kind for kind, _ in faults] == ["fault.raised", "fault.raised"]
    assert faults[0][1]["severity"] == "critical"
    assert "seq 5" in faults[0][1]["message"]
    assert outbox.delivery_state(DEVICE).acked_seq == 0
    assert _verdict(outbox, DEVICE) is ChainStatus.VERIFIED


def test_an_outbox_of_the_v1_agent_is_migrated_forward(tmp_path: Path) -> None:
    """A file written by the v1 agent (no delivery columns) opens with its chains
    anchored, nothing acknowledged, and every event where it was."""
    path = tmp_path / "outbox.db"
    old = sqlite3.connect(path)
    old.executescript(
        "CREATE TABLE chain_heads (device_id TEXT PRIMARY KEY, last_seq INTEGER NOT NULL, "
        "last_hash TEXT NOT NULL);"
        "CREATE TABLE outbox (device_id TEXT NOT NULL, seq INTEGER NOT NULL, wire BLOB NOT NULL, "
        "recorded_at TEXT NOT NULL, sent_at TEXT, PRIMARY KEY (device_id, seq)) WITHOUT ROWID;"
    )
    stream = device_stream(DEVICE, 3)
    old.executemany(
        "INSERT INTO outbox VALUES (?, ?, ?, '2026-11-24T09:00:00.000Z', "
        "'2026-11-24T09:00:01.000Z')",
        [(DEVICE, e.seq, e.body[:-1] + b',"hash":"' + e.hash.encode() + b'"}') for e in stream],
    )
    old.execute("INSERT INTO chain_heads VALUES (?, 3, ?)", (DEVICE, stream[-1].hash))
    old.commit()
    old.close()
    outbox = Outbox(path)
    state = outbox.delivery_state(DEVICE)
    assert (state.head_seq, state.acked_seq, state.anchored) == (3, 0, True)
    assert outbox.stats().unacknowledged == 3
    assert outbox.record(DEVICE, _punch(4)).prev_hash == stream[-1].hash
    assert _verdict(outbox, DEVICE) is ChainStatus.VERIFIED
