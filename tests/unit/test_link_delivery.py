"""The device link's end-to-end delivery without a broker: what a platform ack means
(``judge_ack``), when unacknowledged events go again (``AckClock``), and a
``DeviceLink`` driven through its session callbacks with a fake session."""

import itertools
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from edge_agent.custody import AckClock, AckVerdict, DeliveryState, judge_ack
from edge_agent.device import DeviceReading
from edge_agent.outbox import Outbox
from edge_agent.publisher import DeviceLink, LinkSettings
from schemas import GENESIS_HASH, DeviceChannel, StatusMessage, device_topic
from tests.support.streams import device_stream, punch_data
from transport import BrokerAddress, Message, Publication

DEVICE = "HP-000042"
EVENTS = device_topic(DEVICE, DeviceChannel.EVENTS)
STATUS = device_topic(DEVICE, DeviceChannel.STATUS)
ACKS = device_topic(DEVICE, DeviceChannel.ACKS)
H = {n: f"{n:064x}" for n in range(20)}  # H[0] is the zero hash


@pytest.mark.parametrize(
    ("state", "ack", "own", "verdict"),
    [
        (DeliveryState(0, H[0], 0, False), (0, H[0]), H[0], AckVerdict.ANCHOR),
        (DeliveryState(3, H[3], 0, False), (9, H[9]), None, AckVerdict.REBASE),
        (DeliveryState(3, H[3], 0, False), (2, H[2]), H[2], AckVerdict.REBASE),
        (DeliveryState(5, H[5], 2, True), (9, H[9]), None, AckVerdict.MISMATCH),
        (DeliveryState(5, H[5], 2, True), (4, H[4]), H[4], AckVerdict.ADVANCE),
        (DeliveryState(5, H[5], 2, True), (4, H[9]), H[4], AckVerdict.MISMATCH),
        (DeliveryState(5, H[5], 4, True), (2, H[2]), H[2], AckVerdict.STALE),
        (DeliveryState(5, H[5], 4, True), (1, H[1]), None, AckVerdict.STALE),
        (DeliveryState(5, H[5], 4, True), (0, GENESIS_HASH), GENESIS_HASH, AckVerdict.STALE),
    ],
)  # fmt: skip
def test_judge_ack(
    state: DeliveryState, ack: tuple[int, str], own: str | None, verdict: AckVerdict
) -> None:
    """An unanchored chain follows the platform; an anchored one never re-bases: a
    platform past its head, or a differing hash at or below it, is a mismatch."""
    assert judge_ack(state, *ack, own) is verdict


def test_ack_clock_backs_off_and_resets_on_progress() -> None:
    """The republish wait starts with the unacknowledged stretch, doubles per
    republish up to its cap, and returns to the base when an ack makes progress."""
    clock = AckClock(base_s=10, cap_s=40)
    assert not clock.due(1000)
    clock.start(0)
    clock.start(5)  # later publishes do not postpone it
    assert not clock.due(9.9)
    assert clock.due(10)
    delays = []
    moment = 10.0
    for _ in range(4):
        clock.fired(moment)
        delays.append(clock.timeout_s)
        moment += clock.timeout_s
    assert delays == [20, 40, 40, 40]
    clock.progressed(moment, pending=True)
    assert (clock.timeout_s, clock.due(moment + 9), clock.due(moment + 10)) == (10, False, True)
    clock.progressed(moment, pending=False)
    assert not clock.due(moment + 1000)


class FakeSession:
    """Stands in for the ``MqttClient`` (the link's port to the broker)."""

    def __init__(self) -> None:
        self.connected = False
        self.published: list[tuple[str, bytes, int]] = []
        self._mids = itertools.count(1)

    def tick(self, now: float | None = None) -> bool:
        return self.connected

    def publish(
        self, topic: str, payload: bytes, qos: int = 1, *, retain: bool = False
    ) -> Publication:
        mid = next(self._mids)
        self.published.append((topic, payload, mid))
        return Publication(mid, on_wire=self.connected)

    def stop(self) -> None:
        self.connected = False

    def on(self, topic: str) -> list[tuple[bytes, int]]:
        return [(payload, mid) for t, payload, mid in self.published if t == topic]


class Harness:
    """A link over a fake session with a clock the test moves."""

    def __init__(self, path: Path, *, anchored: bool = False, **settings: Any) -> None:
        self.outbox = Outbox(path)
        if anchored:
            self.outbox.anchor(DEVICE)
        self.link = DeviceLink(
            DEVICE,
            self.outbox,
            BrokerAddress.parse("mqtt://127.0.0.1:1"),
            LinkSettings(linger_s=0, ack_timeout_s=10, ack_timeout_cap_s=40, **settings),
        )
        self.session = FakeSession()
        self.link.mqtt = self.session
        self.now = 100.0

    def connect(self) -> None:
        self.session.connected = True
        self.link.on_connected(1)
        self.link.tick(self.now)

    def advance(self, seconds: float) -> None:
        self.now += seconds
        self.link.tick(self.now)

    def record(self, count: int) -> None:
        first = self.outbox.head(DEVICE)[0] + 1
        for n in range(first, first + count):
            reading = DeviceReading("cores.punched", datetime.now(UTC), punch_data(n))
            self.outbox.record(DEVICE, reading)
        self.link.notify_recorded()

    def puback_all(self) -> None:
        for _, mid in self.session.on(EVENTS):
            self.link.on_published(mid, None)

    def ack(self, stored_through: int, ack_hash: str, *, retained: bool = False) -> None:
        payload = orjson.dumps({"stored_through": stored_through, "hash": ack_hash})
        self.link.on_message(Message(ACKS, payload, 1, retained, 1, 1, datetime.now(UTC)))
        self.link.tick(self.now)

    def seqs_published(self) -> list[int]:
        return [e["seq"] for p, _ in self.session.on(EVENTS) for e in orjson.loads(p)["events"]]

    def status(self) -> StatusMessage:
        return StatusMessage.model_validate_json(self.session.on(STATUS)[-1][0])


@pytest.fixture
def harness(tmp_path: Path) -> Harness:
    """A link whose chain is already anchored (a device that has run before)."""
    return Harness(tmp_path / "outbox.db", anchored=True)


def test_unacknowledged_events_go_again_with_the_same_bytes_after_the_ack_timeout(
    harness: Harness,
) -> None:
    """Events the broker took but the platform never acknowledged are republished,
    byte for byte from the watermark on, after the ack timeout, then less often."""
    harness.record(5)
    harness.connect()
    harness.puback_all()
    first = harness.session.on(EVENTS)[0][0]
    harness.advance(9)
    assert harness.seqs_published() == [1, 2, 3, 4, 5]
    republish_times = []
    for _ in range(80):
        before = len(harness.session.on(EVENTS))
        harness.advance(1)
        if len(harness.session.on(EVENTS)) > before:
            republish_times.append(harness.now)
            harness.puback_all()
    assert harness.session.on(EVENTS)[1][0] == first
    gaps = [b - a for a, b in itertools.pairwise(republish_times)]
    assert gaps == [20, 40]  # 10 s after the publish, then doubling to the cap


def test_an_ack_moves_the_watermark_and_stops_the_republishing(harness: Harness) -> None:
    """A matching ack for part of what was sent makes the next republish start after
    it; one covering everything stops republishing altogether."""
    harness.record(6)
    harness.connect()
    harness.puback_all()
    sealed_hashes = [orjson.loads(e.wire)["hash"] for e in harness.outbox.between(DEVICE, 1, 6)]
    harness.ack(4, sealed_hashes[3])
    assert harness.outbox.delivery_state(DEVICE).acked_seq == 4
    harness.session.published.clear()
    harness.advance(10)
    assert harness.seqs_published() == [5, 6]
    harness.puback_all()
    harness.ack(6, sealed_hashes[5])
    harness.session.published.clear()
    harness.advance(600)
    assert harness.seqs_published() == []


def test_a_mismatching_ack_records_one_fault_and_the_watermark_stays(harness: Harness) -> None:
    """A platform ack whose hash is not the device's records one E-CHAIN-MISMATCH
    fault (published like any event); the same ack again records nothing."""
    harness.record(3)
    harness.connect()
    harness.puback_all()
    harness.ack(2, "f" * 64)
    harness.ack(2, "f" * 64)
    harness.advance(0.1)
    published = [e for p, _ in harness.session.on(EVENTS) for e in orjson.loads(p)["events"]]
    faults = [e for e in published if e["type"] == "fault.raised"]
    assert [(f["seq"], f["data"]["fault_code"]) for f in faults] == [(4, "E-CHAIN-MISMATCH")]
    assert harness.outbox.delivery_state(DEVICE).acked_seq == 0


def test_the_online_status_carries_the_anchored_head(harness: Harness) -> None:
    """On connect the retained status says online with the outbox's head."""
    harness.connect()
    assert harness.status() == StatusMessage.model_validate(
        {"state": "online", "last_seq": 0, "last_hash": GENESIS_HASH}
    )
    harness.record(3)
    harness.connect()
    assert (harness.status().last_seq, harness.status().last_hash) == harness.outbox.head(DEVICE)


def test_a_fresh_chain_waits_for_the_platform_then_starts_at_genesis(tmp_path: Path) -> None:
    """A fresh outbox publishes nothing until the anchor wait has passed without an
    ack; then its chain starts at genesis and the status says so."""
    harness = Harness(tmp_path / "outbox.db", anchor_wait_s=5)
    harness.record(3)
    harness.connect()
    assert harness.status().last_seq == 0
    harness.advance(4.9)
    assert harness.seqs_published() == []
    assert not harness.link.connected
    harness.advance(0.2)
    assert harness.seqs_published() == [1, 2, 3]
    assert harness.status().last_seq == 3
    assert harness.outbox.delivery_state(DEVICE).anchored


def test_a_fresh_chain_continues_after_the_head_the_platform_holds(tmp_path: Path) -> None:
    """A fresh outbox told by the platform's answer that it holds seq N publishes
    ``agent.resynced`` at N+1, then its own events after it."""
    harness = Harness(tmp_path / "outbox.db", anchor_wait_s=5)
    platform = device_stream(DEVICE, 12)
    harness.record(2)
    harness.connect()
    harness.ack(12, platform[-1].hash)
    published = [e for p, _ in harness.session.on(EVENTS) for e in orjson.loads(p)["events"]]
    assert [(e["seq"], e["type"]) for e in published] == [
        (13, "agent.resynced"), (14, "cores.punched"), (15, "cores.punched"),
    ]  # fmt: skip
    assert published[0]["prev_hash"] == platform[-1].hash
    assert harness.status().last_seq == 15


def test_resend_commands_wait_for_the_anchor(tmp_path: Path) -> None:
    """A resend command that arrives before the chain is anchored is answered once it is."""
    harness = Harness(tmp_path / "outbox.db", anchor_wait_s=5)
    harness.record(4)
    harness.connect()
    command = orjson.dumps({"cmd": "resend", "from_seq": 2, "to_seq": 3})
    cmd = device_topic(DEVICE, DeviceChannel.CMD)
    harness.link.on_message(Message(cmd, command, 1, False, 2, 1, datetime.now(UTC)))
    harness.advance(1)
    assert harness.seqs_published() == []
    harness.advance(5)
    assert harness.seqs_published()[:2] == [2, 3]


def test_a_retained_ack_waits_for_the_platforms_answer(tmp_path: Path) -> None:
    """A fresh chain does not re-base on a retained ack at once (it may lag the
    platform's head): the platform's live answer wins when it comes."""
    harness = Harness(tmp_path / "outbox.db", anchor_wait_s=5)
    platform = device_stream(DEVICE, 12)
    harness.record(1)
    harness.connect()
    harness.ack(10, platform[9].hash, retained=True)
    harness.advance(1)
    assert harness.seqs_published() == []
    harness.ack(12, platform[11].hash)
    assert harness.seqs_published() == [13, 14]


def test_without_an_answer_the_best_retained_ack_is_followed(tmp_path: Path) -> None:
    """With no platform to answer (the gateway is down), the anchor wait ends on the
    retained ack: the chain continues after its head."""
    harness = Harness(tmp_path / "outbox.db", anchor_wait_s=5)
    platform = device_stream(DEVICE, 12)
    harness.record(1)
    harness.connect()
    harness.ack(12, platform[11].hash, retained=True)
    harness.advance(4)
    assert harness.seqs_published() == []
    harness.advance(1.5)
    assert harness.seqs_published() == [13, 14]
