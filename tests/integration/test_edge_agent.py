"""The edge agent against a real Mosquitto: crashes, broker outages and resends
never lose, reorder or alter an event."""

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

from edge_agent.agent import Agent
from edge_agent.device import DeviceReading
from edge_agent.driver import LinkDriver
from edge_agent.outbox import Outbox
from edge_agent.publisher import DeviceLink, LinkSettings
from schemas import DeviceChannel, decode_event_batch, device_topic
from schemas.chain import ChainStatus, link_of_wire_event, verify_chain
from tests.support.mosquitto import TemporaryMosquitto
from tests.support.streams import punch_data
from tests.support.subscriber import RecordingSubscriber
from transport import BrokerAddress

DEVICE = "HP-000777"
EVENTS_TOPIC = device_topic(DEVICE, DeviceChannel.EVENTS)


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
    total = 1200
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

    def __init__(self, outbox_path: Path, broker: TemporaryMosquitto) -> None:
        self.outbox_path = outbox_path
        self._broker = BrokerAddress.parse(broker.url)
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
        settings = LinkSettings(linger_s=0.01, connect_timeout_s=3)
        link = DeviceLink(DEVICE, outbox, self._broker, settings, watcher=driver)
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
        assert watcher.wait_for(lambda s: (status, b'{"state":"online"}') in s.messages)
        os.kill(process.pid, signal.SIGKILL)  # no goodbye: the broker publishes the will
        process.wait(timeout=10)
        assert watcher.wait_for(
            lambda s: s.messages[-1] == (status, b'{"state":"offline"}'), timeout=90
        )
