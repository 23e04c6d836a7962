"""The edge agent against a real Mosquitto: crashes, broker outages and resends
never lose, reorder or alter an event; events the platform does not acknowledge go
again; acks move the watermark, a mismatching one raises a fault, and a wiped
outbox continues the platform's stream (DESIGN §4.2)."""

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from paho.mqtt.publish import single

from edge_agent.agent import Agent
from edge_agent.device import DeviceReading
from edge_agent.driver import LinkDriver
from edge_agent.outbox import Durability, Outbox
from edge_agent.publisher import DeviceLink, LinkSettings
from schemas import GENESIS_HASH, DeviceChannel, StatusMessage, decode_event_batch, device_topic
from schemas.chain import ChainStatus, link_of_wire_event, verify_chain
from tests.support.mosquitto import TemporaryMosquitto
from tests.support.streams import punch_data
from tests.support.subscriber import RecordingSubscriber
from transport import BrokerAddress

DEVICE = "HP-000777"
EVENTS_TOPIC = device_topic(DEVICE, DeviceChannel.EVENTS)
ACKS_TOPIC = device_topic(DEVICE, DeviceChannel.ACKS)


@pytest.fixture
def broker() -> Iterator[TemporaryMosquitto]:
    with TemporaryMosquitto() as server:
        yield server


def _first_occurrences(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each seq once, as first seen; duplicates must repeat it byte for byte."""
    first: dict[int, bytes] = {}
    ordered: list[dict[str, Any]] = []
    for event in events:
        raw = orjson.dumps(event)
        seen = first.setdefault(event["seq"], raw)
        assert seen == raw, f"seq {event['seq']} was resent with different content"
        if seen is raw:
            ordered.append(event)
    return ordered


def _assert_complete_chain(events: list[dict[str, Any]], count: int) -> None:
    unique = _first_occurrences(events)
    assert [event["seq"] for event in unique] == list(range(1, count + 1))
    verdict = verify_chain(link_of_wire_event(event) for event in unique)
    assert verdict.status is ChainStatus.VERIFIED, verdict.problem


def _agent_process(
    outbox: Path, broker: TemporaryMosquitto, events: int
) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "tests.support.agent_process", DEVICE, str(outbox)]
    command += [broker.url, "--events", str(events), "--rate", "800"]
    with (outbox.parent / "agent.log").open("ab") as log:
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)


def _agent_log(outbox: Path) -> str:
    return (outbox.parent / "agent.log").read_text(errors="replace")[-3000:]


def test_kill_minus_nine_mid_publish_loses_nothing(
    broker: TemporaryMosquitto, tmp_path: Path
) -> None:
    """The agent is killed (SIGKILL) three times while recording and publishing; after
    the last restart the subscriber has every event once or more, in order, chained."""
    total = 1500
    outbox_path = tmp_path / "outbox.db"
    with RecordingSubscriber(broker.port, EVENTS_TOPIC) as subscriber:
        for _ in range(3):
            process = _agent_process(outbox_path, broker, total)
            # Kill only once events are flowing, so the kill lands mid-publish.
            before = len(subscriber.events())
            assert subscriber.wait_for(lambda s, b=before: len(s.events()) > b + 50, timeout=30)
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=10)
        _restart_and_expect_everything(outbox_path, broker, subscriber, total)
    # The outbox itself is a whole chain and knows everything was acknowledged.
    outbox = Outbox(outbox_path)
    assert outbox.head(DEVICE)[0] == total
    assert outbox.stats().unsent == 0
    outbox.close()


def test_nothing_counts_as_sent_until_the_broker_acknowledges_it(
    broker: TemporaryMosquitto, tmp_path: Path
) -> None:
    """The broker freezes mid-stream (so publishes reach its socket but are never
    acknowledged), then the agent and the broker both crash.  Everything the broker
    never acknowledged must go again after both restart."""
    # Five seconds of recording at the agent's 800 a second: the freeze, once 100
    # events are seen, must come before the last, however slowly the subscriber reads.
    total = 4000
    outbox_path = tmp_path / "outbox.db"
    with RecordingSubscriber(broker.port, EVENTS_TOPIC) as subscriber:
        agent = _agent_process(outbox_path, broker, total)
        assert subscriber.wait_for(lambda s: len(s.events()) > 100, timeout=30)
        broker.freeze()
        time.sleep(1.0)  # the agent records and publishes on into the void
        agent.kill()
        agent.wait(timeout=10)
        broker.crash()
        seen_before_restart = len(_first_occurrences(subscriber.events()))
        assert seen_before_restart < total, "the freeze came too late to test anything"
        broker.start()
        subscriber.wait_subscribed()
        _restart_and_expect_everything(outbox_path, broker, subscriber, total)


def _restart_and_expect_everything(
    outbox_path: Path, broker: TemporaryMosquitto, subscriber: RecordingSubscriber, total: int
) -> None:
    """Start the agent once more: the subscriber must end up with every event of the
    device, in order, chained (duplicates allowed, byte-identical)."""
    survivor = _agent_process(outbox_path, broker, total)
    try:
        assert subscriber.wait_for(
            lambda s: {e["seq"] for e in s.events()} >= set(range(1, total + 1)), timeout=60
        ), f"missing {_missing(subscriber, total)}; agent log: {_agent_log(outbox_path)}"
    finally:
        survivor.send_signal(signal.SIGTERM)
        survivor.wait(timeout=10)
    _assert_complete_chain(subscriber.events(), total)


def _missing(subscriber: RecordingSubscriber, total: int) -> str:
    missing = sorted(set(range(1, total + 1)) - {e["seq"] for e in subscriber.events()})
    return f"{len(missing)} seqs, first {missing[:5]}, last {missing[-5:]}"


class _RunningAgent:
    """One in-process agent driven on its own thread (the outbox stays on it)."""

    def __init__(
        self, outbox_path: Path, broker: TemporaryMosquitto, settings: LinkSettings | None = None
    ) -> None:
        self.outbox_path = outbox_path
        self._broker = BrokerAddress.parse(broker.url)
        self._settings = settings or LinkSettings(
            linger_s=0.01, connect_timeout_s=3, anchor_wait_s=0.5
        )
        self._pending: list[DeviceReading] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.recorded = 0

    def report_punches(self, count: int) -> None:
        with self._lock:
            for _ in range(count):
                self.recorded += 1
                reading = DeviceReading("cores.punched", datetime.now(UTC), punch_data(1))
                self._pending.append(reading)

    def _run(self) -> None:
        outbox = Outbox(self.outbox_path)
        driver = LinkDriver(outbox)
        link = DeviceLink(DEVICE, outbox, self._broker, self._settings, watcher=driver)
        driver.add(link)
        agent = Agent(DEVICE, outbox, link)

        def record() -> None:
            with self._lock:
                pending, self._pending = self._pending, []
            for reading in pending:
                agent.report(reading)

        driver.run(self._stop, between_turns=record)
        outbox.close()

    def __enter__(self) -> "_RunningAgent":
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def test_events_written_while_the_broker_is_down_arrive_after_it_returns(
    broker: TemporaryMosquitto, tmp_path: Path
) -> None:
    """Events recorded while the broker is down arrive, as one complete chain, once it returns."""
    with (
        RecordingSubscriber(broker.port, EVENTS_TOPIC) as subscriber,
        _RunningAgent(tmp_path / "outbox.db", broker) as agent,
    ):
        agent.report_punches(100)
        assert subscriber.wait_for(lambda s: len(_first_occurrences(s.events())) == 100)
        broker.stop()
        agent.report_punches(400)  # recorded while nobody can hear
        time.sleep(1.5)
        broker.start()
        assert subscriber.wait_for(
            lambda s: len(_first_occurrences(s.events())) == 500, timeout=60
        ), broker.log_tail()
        _assert_complete_chain(subscriber.events(), 500)


def test_a_resend_command_is_answered_with_identical_bytes(
    broker: TemporaryMosquitto, tmp_path: Path
) -> None:
    """A resend command is answered with the requested events, byte for byte as first sent."""
    with (
        RecordingSubscriber(broker.port, EVENTS_TOPIC) as subscriber,
        _RunningAgent(tmp_path / "outbox.db", broker) as agent,
    ):
        agent.report_punches(120)
        assert subscriber.wait_for(lambda s: len(_first_occurrences(s.events())) == 120)
        originals = {event["seq"]: orjson.dumps(event) for event in subscriber.events()}
        received = len(subscriber.messages)

        command = orjson.dumps({"cmd": "resend", "from_seq": 40, "to_seq": 60})
        subscriber.publish(device_topic(DEVICE, DeviceChannel.CMD), command)

        assert subscriber.wait_for(
            lambda s: sum(len(orjson.loads(p)["events"]) for _, p in s.messages[received:]) >= 21
        )
        answer = [
            event for _, payload in subscriber.messages[received:]
            for event in orjson.loads(payload)["events"]
        ]  # fmt: skip
        assert [event["seq"] for event in answer] == list(range(40, 61))
        assert all(orjson.dumps(event) == originals[event["seq"]] for event in answer)
        # And every batch on the wire is one the platform's decoder accepts whole.
        for _, payload in subscriber.messages:
            decoded = decode_event_batch(DEVICE, payload)
            assert not decoded.rejections


def test_the_agent_announces_itself_and_its_will_says_offline(
    broker: TemporaryMosquitto, tmp_path: Path
) -> None:
    """The agent announces itself online, and its will says offline when it is killed."""
    status = device_topic(DEVICE, DeviceChannel.STATUS)
    with RecordingSubscriber(broker.port, status, client_id="status-watch") as watcher:
        process = _agent_process(tmp_path / "outbox.db", broker, 0)
        online = {"state": "online", "last_seq": 0, "last_hash": GENESIS_HASH}
        assert watcher.wait_for(
            lambda s: any(orjson.loads(payload) == online for _, payload in s.messages)
        )
        os.kill(process.pid, signal.SIGKILL)  # no goodbye: the broker publishes the will
        process.wait(timeout=10)
        assert watcher.wait_for(
            lambda s: s.messages[-1] == (status, b'{"state":"offline"}'), timeout=90
        )


# -- end-to-end delivery (DESIGN §4.2) -------------------------------------------

QUICK_ACKS = LinkSettings(linger_s=0.01, connect_timeout_s=3, anchor_wait_s=0.5, ack_timeout_s=1.0)


def _outbox_state(path: Path) -> tuple[int, int, int]:
    """(head, watermark, unsent) as the outbox file says, read beside the agent."""
    outbox = Outbox(path)
    try:
        state = outbox.delivery_state(DEVICE)
        return state.head_seq, state.acked_seq, outbox.stats().unsent
    finally:
        outbox.close()


def _hash_of(subscriber: RecordingSubscriber, seq: int) -> str:
    return next(str(e["hash"]) for e in subscriber.events() if e["seq"] == seq)


def _publish_ack(broker: TemporaryMosquitto, stored_through: int, ack_hash: str) -> None:
    """What the platform does after a commit: a retained ack on the device's topic."""
    payload = orjson.dumps({"stored_through": stored_through, "hash": ack_hash})
    single(ACKS_TOPIC, payload, qos=1, retain=True, hostname="127.0.0.1", port=broker.port)


def _wait(predicate: Any, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return bool(predicate())


def test_events_the_broker_took_but_nobody_stored_are_published_again(
    broker: TemporaryMosquitto, tmp_path: Path
) -> None:
    """Events PUBACKed while no platform was listening (so the broker dropped them)
    are published again, byte for byte, once the ack timeout passes without an ack."""
    path = tmp_path / "outbox.db"
    with _RunningAgent(path, broker, QUICK_ACKS) as agent:
        agent.report_punches(20)
        assert _wait(lambda: _outbox_state(path) == (20, 0, 0))  # all PUBACKed, none acked
        with RecordingSubscriber(broker.port, EVENTS_TOPIC) as platform:
            assert platform.wait_for(lambda s: len(_first_occurrences(s.events())) == 20)
            _assert_complete_chain(platform.events(), 20)


def test_a_retained_ack_moves_the_watermark_and_stops_the_republishing(
    broker: TemporaryMosquitto, tmp_path: Path
) -> None:
    """A retained platform ack with the device's own hash moves the outbox's
    watermark, and what it covers is not published again."""
    path = tmp_path / "outbox.db"
    with (
        RecordingSubscriber(broker.port, EVENTS_TOPIC) as platform,
        _RunningAgent(path, broker, QUICK_ACKS) as agent,
    ):
        agent.report_punches(12)
        assert platform.wait_for(lambda s: len(s.events()) >= 24)  # sent, then sent again
        _publish_ack(broker, 12, _hash_of(platform, 12))
        assert _wait(lambda: _outbox_state(path)[1] == 12)
        time.sleep(0.5)  # a republish already under way may still land
        received = len(platform.messages)
        time.sleep(3 * QUICK_ACKS.ack_timeout_s)
        assert len(platform.messages) == received


def test_a_mismatching_retained_ack_records_one_chain_mismatch_fault(
    broker: TemporaryMosquitto, tmp_path: Path
) -> None:
    """A retained ack whose hash is not the device's records exactly one critical
    E-CHAIN-MISMATCH fault, however often it is delivered, and moves nothing."""
    path = tmp_path / "outbox.db"

    def faults(platform: RecordingSubscriber) -> list[dict[str, Any]]:
        unique = _first_occurrences(platform.events())
        return [e for e in unique if e["type"] == "fault.raised"]

    with RecordingSubscriber(broker.port, EVENTS_TOPIC) as platform:
        with _RunningAgent(path, broker, QUICK_ACKS) as agent:
            agent.report_punches(8)
            assert platform.wait_for(lambda s: len(_first_occurrences(s.events())) == 8)
            _publish_ack(broker, 5, "f" * 64)
            assert platform.wait_for(lambda s: len(faults(s)) == 1)
            _publish_ack(broker, 5, "f" * 64)  # delivered again
        with _RunningAgent(path, broker, QUICK_ACKS):  # and again on reconnecting
            time.sleep(2.0)
        (fault,) = faults(platform)
        assert fault["seq"] == 9
        assert fault["data"]["fault_code"] == "E-CHAIN-MISMATCH"
        assert fault["data"]["severity"] == "critical"
        assert "seq 5" in fault["data"]["message"]
        assert _outbox_state(path)[1] == 0


def test_a_wiped_outbox_continues_after_the_platforms_head(
    broker: TemporaryMosquitto, tmp_path: Path
) -> None:
    """A board whose outbox was wiped learns the platform's head N from the retained
    ack and continues at N+1 with ``agent.resynced`` first: one chain from seq 1."""
    path = tmp_path / "outbox.db"
    with RecordingSubscriber(broker.port, EVENTS_TOPIC) as platform:
        with _RunningAgent(path, broker) as agent:
            agent.report_punches(30)
            assert platform.wait_for(lambda s: len(_first_occurrences(s.events())) == 30)
        _publish_ack(broker, 30, _hash_of(platform, 30))
        for leftover in tmp_path.glob("outbox.db*"):
            leftover.unlink()  # the flash is wiped
        with _RunningAgent(path, broker, LinkSettings(linger_s=0.01, anchor_wait_s=5)) as agent:
            agent.report_punches(4)  # recorded at once, before any ack could arrive
            assert platform.wait_for(lambda s: len(_first_occurrences(s.events())) == 35)
        events = _first_occurrences(platform.events())
        resynced = events[30]
        assert (resynced["seq"], resynced["type"]) == (31, "agent.resynced")
        assert resynced["data"] == {"from_seq": 30, "reason": "state_lost"}
        assert [e["type"] for e in events[31:]] == ["cores.punched"] * 4
        _assert_complete_chain(platform.events(), 35)
        head, watermark, _ = _outbox_state(path)
        assert (head, watermark) == (35, 30)


def test_a_wiped_board_takes_no_ack_queued_for_its_past_as_news(
    broker: TemporaryMosquitto, tmp_path: Path
) -> None:
    """An ack queued in the broker session the board had before its flash was wiped
    (published while it was away, delivered live on reconnect) is history, not the
    platform's answer: the wiped board starts a new session and re-bases on the head
    the platform holds now."""
    path = tmp_path / "outbox.db"
    with RecordingSubscriber(broker.port, EVENTS_TOPIC) as platform:
        with _RunningAgent(path, broker) as agent:
            agent.report_punches(12)
            assert platform.wait_for(lambda s: len(_first_occurrences(s.events())) == 12)
        # Queued in the board's persistent session while it is away, not retained.
        stale = orjson.dumps({"stored_through": 8, "hash": _hash_of(platform, 8)})
        single(ACKS_TOPIC, stale, qos=1, hostname="127.0.0.1", port=broker.port)
        _publish_ack(broker, 12, _hash_of(platform, 12))
        for leftover in tmp_path.glob("outbox.db*"):
            leftover.unlink()  # the flash is wiped
        with _RunningAgent(path, broker, LinkSettings(linger_s=0.01, anchor_wait_s=2)) as agent:
            agent.report_punches(2)
            assert platform.wait_for(lambda s: len(_first_occurrences(s.events())) == 15)
        resynced = _first_occurrences(platform.events())[12]
        assert (resynced["seq"], resynced["data"]["from_seq"]) == (13, 12)
        _assert_complete_chain(platform.events(), 15)


def test_the_online_status_carries_the_head(broker: TemporaryMosquitto, tmp_path: Path) -> None:
    """On reconnecting, the agent's retained online status names its chain head."""
    path = tmp_path / "outbox.db"
    status = device_topic(DEVICE, DeviceChannel.STATUS)
    with _RunningAgent(path, broker) as agent:
        agent.report_punches(7)
        assert _wait(lambda: _outbox_state(path)[::2] == (7, 0))  # all seven sent
    outbox = Outbox(path)
    head_seq, head_hash = outbox.head(DEVICE)
    outbox.close()
    expected = StatusMessage.model_validate(
        {"state": "online", "last_seq": head_seq, "last_hash": head_hash}
    )
    with (
        RecordingSubscriber(broker.port, status, client_id="status-watch") as watcher,
        _RunningAgent(path, broker),
    ):
        assert watcher.wait_for(
            lambda s: any(StatusMessage.model_validate_json(p) == expected for _, p in s.messages)
        )
    assert head_seq == 7


def test_a_fleet_of_links_says_goodbye_at_once(broker: TemporaryMosquitto, tmp_path: Path) -> None:
    """Two hundred links on one driver say goodbye together, within a couple of
    seconds, each leaving its retained offline status and no socket open."""
    outbox = Outbox(tmp_path / "fleet.db", durability=Durability.NORMAL)
    driver = LinkDriver(outbox)
    address = BrokerAddress.parse(broker.url)
    device_ids = [f"HP-{n:06d}" for n in range(1, 201)]
    for device_id in device_ids:
        link = DeviceLink(device_id, outbox, address, LinkSettings(anchor_wait_s=0), driver)
        driver.add(link)
    deadline = time.monotonic() + 20
    while not all(link.connected for link in driver.links) and time.monotonic() < deadline:
        driver.turn()
    with RecordingSubscriber(broker.port, "coreline/v1/devices/+/status", "status-watch") as watch:
        started = time.monotonic()
        driver.close_links()
        elapsed = time.monotonic() - started
        assert elapsed < 2.0, f"goodbye took {elapsed:.1f} s"
        assert driver.watching == 0

        def last_status(s: RecordingSubscriber) -> dict[str, bytes]:
            return {topic.split("/")[3]: payload for topic, payload in s.messages}

        assert watch.wait_for(
            lambda s: last_status(s) == dict.fromkeys(device_ids, b'{"state":"offline"}')
        )
    outbox.close()
