"""The gateway between a real Mosquitto and a real PostgreSQL: vectors in, exactly
the expected events stored; bad input dead-lettered; telemetry, presence, gaps."""

import random
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway.ingest import IngestOptions
from gateway.service import Gateway, GatewayOptions
from schemas import device_topic
from schemas.chain import ChainLink, ChainStatus, verify_chain
from schemas.streams import device_stream as stream_of
from schemas.topics import DeviceChannel
from services.eventstore import EventStore, open_event_store
from tests.support.mosquitto import TemporaryMosquitto
from tests.support.postgres import free_port
from tests.support.publisher import Publisher
from tests.support.streams import device_stream
from tests.support.subscriber import RecordingSubscriber
from tests.support.vectors import STREAM_DEVICES, batch_payload, load_invalid, load_stream
from transport import BrokerAddress


@pytest.fixture
def broker() -> Iterator[TemporaryMosquitto]:
    with TemporaryMosquitto() as server:
        yield server


class _RunningGateway:
    def __init__(self, url: str, broker: TemporaryMosquitto, options: GatewayOptions) -> None:
        self.gateway = Gateway(
            lambda: open_event_store(url), BrokerAddress.parse(broker.url), options
        )
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self.gateway.run, args=(self._stop,), daemon=True)

    def __enter__(self) -> "_RunningGateway":
        self._thread.start()
        assert self.gateway.wait_connected(15)
        time.sleep(0.2)  # subscriptions granted
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=15)


@pytest.fixture
def running_gateway(store_url: str, broker: TemporaryMosquitto) -> Callable[..., _RunningGateway]:
    def start(**options: Any) -> _RunningGateway:
        return _RunningGateway(store_url, broker, GatewayOptions(ingest=IngestOptions(**options)))

    return start


@pytest.fixture
def ingest_store(store_url: str) -> Iterator[EventStore]:
    """The store the gateway writes to: PostgreSQL, and SQLite (the embedded default)."""
    store = open_event_store(store_url)
    yield store
    store.close()


def _wait(predicate: Callable[[], bool], timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def _chain(store: EventStore, device_id: str) -> tuple[ChainStatus, int, str]:
    stored = store.read_stream(stream_of(device_id))
    verdict = verify_chain(ChainLink(e.seq, e.body, e.hash, str(e.event_id)) for e in stored)
    return verdict.status, verdict.last_seq, verdict.last_hash


def test_vectors_through_a_real_broker(
    running_gateway: Callable[..., _RunningGateway],
    broker: TemporaryMosquitto,
    ingest_store: EventStore,
    vectors_dir: Path,
) -> None:
    """Every vector stream, in batches interleaved across devices and partly sent
    twice, is stored exactly as expected; every invalid payload is dead-lettered
    with its reason, in the same run."""
    messages: list[tuple[str, bytes]] = []
    streams = {device: load_stream(vectors_dir, device) for device in STREAM_DEVICES}
    for device, stream in streams.items():
        events = stream["events"]
        for start in range(0, len(events), 7):
            payload = batch_payload(device, events[start : start + 7])
            messages.append((device_topic(device, DeviceChannel.EVENTS), payload))
    messages += messages[:5]  # redelivery
    invalid = load_invalid(vectors_dir)
    for case in invalid:
        topic = device_topic(case["topic_device"], DeviceChannel.EVENTS)
        messages.append((topic, case["payload"].encode()))
    random.Random(11).shuffle(messages)

    with running_gateway(), Publisher(broker.port) as publisher:
        publisher.publish_many(messages)
        assert _wait(lambda: len(ingest_store.dead_letters(limit=100)) >= len(invalid))
        for device, stream in streams.items():
            expected = stream["expected"]
            last_seq: int = expected["last_seq"]

            def complete(d: str = device, n: int = last_seq) -> bool:
                return _chain(ingest_store, d)[1] == n

            assert _wait(complete), (
                _chain(ingest_store, device),
                [(x.reason, x.detail) for x in ingest_store.dead_letters(limit=100)],
            )
            assert _chain(ingest_store, device) == (
                ChainStatus.VERIFIED,
                expected["last_seq"],
                expected["last_hash"],
            )
            stored = ingest_store.read_stream(stream_of(device))
            assert [e.hash for e in stored] == [e["hash"] for e in stream["events"]]
        time.sleep(0.3)  # nothing more arrives
        letters = ingest_store.dead_letters(limit=100)
    assert sorted((letter.reason, letter.topic.split("/")[3]) for letter in letters) == sorted(
        (case["reason"], case["topic_device"]) for case in invalid
    )
    oversize = next(letter for letter in letters if letter.reason == "oversize")
    assert oversize.raw_size > len(oversize.raw)  # raw bytes kept, but bounded


def test_telemetry_and_presence_are_recorded(
    running_gateway: Callable[..., _RunningGateway],
    broker: TemporaryMosquitto,
    ingest_store: EventStore,
) -> None:
    """Heartbeats and presence are stored; a malformed heartbeat is dead-lettered as schema."""
    device = "HP-000500"
    beat = {"device_id": device, "sampled_at": "2026-11-25T09:00:00.000Z", "battery_pct": 77.0,
            "temperature_c": 31.5, "uptime_s": 3600, "rssi_dbm": -60.0}  # fmt: skip
    with running_gateway(), Publisher(broker.port) as publisher:
        publisher.publish(device_topic(device, DeviceChannel.TELEMETRY), orjson.dumps(beat), qos=0)
        publisher.publish(device_topic(device, DeviceChannel.STATUS), b'{"state":"online"}')
        publisher.publish(
            device_topic(device, DeviceChannel.TELEMETRY), b'{"battery_pct": "x"}', qos=0
        )
        assert _wait(lambda: bool(ingest_store.latest_heartbeats(device)))
        assert _wait(lambda: device in ingest_store.presence([device]))
        assert _wait(lambda: len(ingest_store.dead_letters()) == 1)
    assert ingest_store.latest_heartbeats(device)[0].battery_pct == 77.0
    assert ingest_store.presence([device])[device].online
    assert ingest_store.dead_letters()[0].reason == "schema"


def test_a_gap_is_asked_for_again_and_filled(
    running_gateway: Callable[..., _RunningGateway],
    broker: TemporaryMosquitto,
    ingest_store: EventStore,
) -> None:
    """A gap in a stream is asked for with a resend command, and once filled no more are sent."""
    device = "HP-000600"
    stream = [orjson.loads(event.wire_json()) for event in device_stream(device, 20)]
    events_topic = device_topic(device, DeviceChannel.EVENTS)
    cmd_topic = device_topic(device, DeviceChannel.CMD)
    with (
        running_gateway(gap_grace_s=0.5, gap_retry_every_s=0.5, gap_max_attempts=3),
        RecordingSubscriber(broker.port, cmd_topic, client_id="device-cmd") as commands,
        Publisher(broker.port) as publisher,
    ):
        publisher.publish(events_topic, batch_payload(device, stream[:10]))
        publisher.publish(events_topic, batch_payload(device, stream[15:]))
        assert commands.wait_for(lambda s: len(s.messages) >= 2, timeout=10)
        asked = orjson.loads(commands.messages[0][1])
        assert asked == {"cmd": "resend", "from_seq": 11, "to_seq": 15}
        publisher.publish(events_topic, batch_payload(device, stream[10:15]))
        assert _wait(lambda: _chain(ingest_store, device)[:2] == (ChainStatus.VERIFIED, 20))
        settled = len(commands.messages)
        time.sleep(1.5)
        assert len(commands.messages) == settled  # filled: no more requests
        assert settled <= 3  # and never more than the bounded attempts


def test_hostile_payloads_leave_the_gateway_running(
    running_gateway: Callable[..., _RunningGateway],
    broker: TemporaryMosquitto,
    ingest_store: EventStore,
) -> None:
    """10,000 payloads of random bytes, huge numbers, deep nesting, wrong types and
    control characters:
    every one dead-lettered, and a valid batch afterwards still goes through."""
    rng = random.Random(2026)
    topic = device_topic("HP-000700", DeviceChannel.EVENTS)
    valid = orjson.loads(device_stream("HP-000700", 1)[0].wire_json())

    def hostile(n: int) -> bytes:
        kind = n % 6
        if kind == 0:
            return rng.randbytes(rng.randint(0, 400))
        if kind == 1:
            return b'{"device_id":"HP-000700","events":[' + b"[" * 5000 + b"]" * 5000 + b"]}"
        if kind == 2:
            huge = orjson.dumps({"device_id": "HP-000700", "events": [valid]})
            return huge.replace(b'"seq":1', b'"seq":' + b"9" * rng.randint(20, 5000), 1)
        if kind == 3:
            mutated = dict(valid)
            mutated[rng.choice(list(valid))] = rng.choice([None, [], {}, -1, "x" * 3000, 1e308])
            return orjson.dumps({"device_id": "HP-000700", "events": [mutated]})
        if kind == 4 and n % 12 == 4:  # a member name that is a NUL: quoted in the detail
            return b'{"device_id": "HP-000700", "events": [{}], "\\u0000": 1}'
        if kind == 4:
            return b'{"device_id": 12, "events": "no", "big": [1e999]}'
        return orjson.dumps({"device_id": "HP-000700", "events": [valid] * 501})

    payloads = [(topic, hostile(n)) for n in range(10_000)]
    with running_gateway(), Publisher(broker.port) as publisher:
        publisher.publish_many(payloads)
        publisher.publish(topic, orjson.dumps({"device_id": "HP-000700", "events": [valid]}))
        assert _wait(lambda: _chain(ingest_store, "HP-000700")[1] == 1, timeout=120)
        assert _wait(lambda: _count_dead_letters(ingest_store) >= 10_000, timeout=120)
    assert _count_dead_letters(ingest_store) == 10_000


def _count_dead_letters(store: EventStore) -> int:
    total, after = 0, 0
    while batch := store.dead_letters(after_id=after, limit=5000):
        total += len(batch)
        after = batch[-1].id
    return total


def _gateway_cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "services", "gateway", *args]


def test_the_gateway_process_serves_metrics(
    postgres_url: str, broker: TemporaryMosquitto, vectors_dir: Path, tmp_path: Path
) -> None:
    """`coreline gateway` serves Prometheus metrics counting appends, dead letters and messages."""
    port = free_port()
    log = tmp_path / "gateway.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            _gateway_cli("--database-url", postgres_url, "--mqtt-url", broker.url,
                         "--metrics-port", str(port)),
            stdout=output, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        assert _wait(lambda: "subscribed" in log.read_text(), timeout=30), log.read_text()
        stream = load_stream(vectors_dir, "HP-000011")["events"]
        with Publisher(broker.port) as publisher:
            topic = device_topic("HP-000011", DeviceChannel.EVENTS)
            publisher.publish(topic, batch_payload("HP-000011", stream))
            publisher.publish(topic, b"not json")

        def scrape() -> str:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as page:
                text: str = page.read().decode()
                return text

        assert _wait(lambda: "coreline_gateway_events_appended_total 39.0" in scrape())
        text = scrape()
        assert 'coreline_gateway_dead_letters_total{reason="malformed"} 1.0' in text
        assert 'coreline_gateway_messages_total{channel="events"} 2.0' in text
        assert "coreline_gateway_commit_seconds_count" in text
        assert "coreline_gateway_connected 1.0" in text
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--database-url", "mysql://db/x"), "CORELINE_DATABASE_URL"),
        (("--database-url", "postgresql://nobody@127.0.0.1:1/none"), "cannot reach the database"),
        (("--mqtt-url", "http://broker"), "CORELINE_MQTT_URL"),
    ],
)
def test_bad_configuration_fails_at_start_up(args: tuple[str, ...], message: str) -> None:
    """A bad database or MQTT URL stops the gateway at start-up with exit 2 and what to fix."""
    result = subprocess.run(
        _gateway_cli(*args), capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 2
    assert message in result.stderr
