"""``coreline agent`` and ``coreline simulate`` as operators run them, against a
real Mosquitto."""

import os
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from edge_agent.outbox import Outbox
from schemas import decode_event_batch
from schemas.chain import ChainStatus, link_of_wire_event, verify_chain
from schemas.topics import parse_device_topic
from tests.support.mosquitto import TemporaryMosquitto
from tests.support.streams import punch_data
from tests.support.subscriber import RecordingSubscriber


@pytest.fixture
def broker() -> Iterator[TemporaryMosquitto]:
    with TemporaryMosquitto() as server:
        yield server


def _coreline(
    *args: str, stdin: bytes = b"", timeout: float = 120
) -> subprocess.CompletedProcess[bytes]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("CORELINE_")}
    return subprocess.run(
        [sys.executable, "-m", "services", *args],
        input=stdin, capture_output=True, env=env, timeout=timeout, check=False,
    )  # fmt: skip


def _unique_by_device(messages: list[tuple[str, bytes]]) -> dict[str, list[dict[str, Any]]]:
    streams: dict[str, dict[int, dict[str, Any]]] = defaultdict(dict)
    for topic, payload in messages:
        parsed = parse_device_topic(topic)
        assert parsed is not None
        decoded = decode_event_batch(parsed.device_id, payload)
        assert not decoded.rejections, decoded.rejections
        for event in orjson.loads(payload)["events"]:
            streams[parsed.device_id].setdefault(event["seq"], event)
    return {device: [s[seq] for seq in sorted(s)] for device, s in streams.items()}


def test_agent_records_and_publishes_firmware_lines(
    broker: TemporaryMosquitto, tmp_path: Path
) -> None:
    """`coreline agent` publishes valid input as one verified chain and logs what it refused."""
    lines = [
        {"type": "cores.punched", "occurred_at": _t(n),
         "data": punch_data(n)}
        for n in range(1, 31)
    ]  # fmt: skip
    lines.insert(5, {"type": "cores.punched", "occurred_at": _t(0), "data": {"actuations": -1}})
    stdin = b"".join(orjson.dumps(line) + b"\n" for line in lines) + b"not json\n"
    stdin += orjson.dumps({"heartbeat": {"sampled_at": _t(99), "battery_pct": 80.0}}) + b"\n"
    topic = "coreline/v1/devices/HP-000900/events"
    with RecordingSubscriber(broker.port, topic) as subscriber:
        result = _coreline(
            "agent", "--device-id", "HP-000900", "--mqtt-url", broker.url,
            "--outbox", str(tmp_path / "outbox.db"), stdin=stdin,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr.decode()
        assert subscriber.wait_for(
            lambda s: len(_unique_by_device(s.messages).get("HP-000900", [])) == 30
        )
        events = _unique_by_device(subscriber.messages)["HP-000900"]
    assert [event["seq"] for event in events] == list(range(1, 31))
    assert verify_chain(link_of_wire_event(e) for e in events).status is ChainStatus.VERIFIED
    log = result.stderr.decode()
    assert "30 events recorded, 2 lines refused, 0 unsent" in log
    assert "cores.punched (would be seq 6)" in log
    assert "not JSON" in log


def _t(n: int) -> str:
    return f"2026-11-25T09:00:{n % 60:02d}.000Z"


def test_agent_refuses_bad_configuration_with_a_clear_message(tmp_path: Path) -> None:
    """`coreline agent` exits 2 naming the bad MQTT URL or device id it was given."""
    result = _coreline("agent", "--device-id", "HP-000900", "--mqtt-url", "http://broker:80")
    assert result.returncode == 2
    assert b"CORELINE_MQTT_URL" in result.stderr
    assert b"mqtt://" in result.stderr
    result = _coreline("agent", "--device-id", "lower-case", "--outbox", str(tmp_path / "o.db"))
    assert result.returncode == 2
    assert b"--device-id" in result.stderr


def test_simulate_publishes_whole_valid_chains_for_every_device(
    broker: TemporaryMosquitto, tmp_path: Path
) -> None:
    """`coreline simulate` publishes every device's whole outbox as a verified chain."""
    outbox_path = tmp_path / "fleet.db"
    with RecordingSubscriber(broker.port, "coreline/v1/devices/+/events") as subscriber:
        result = _coreline(
            "simulate", "--devices", "20", "--seed", "7", "--speed", "600", "--duration", "6",
            "--mqtt-url", broker.url, "--outbox", str(outbox_path),
        )  # fmt: skip
        assert result.returncode == 0, result.stderr.decode()
        outbox = Outbox(outbox_path)
        heads = {f"HP-{n:06d}": outbox.head(f"HP-{n:06d}")[0] for n in range(1, 21)}
        assert outbox.stats().unsent == 0
        outbox.close()
        expected = sum(heads.values())
        assert subscriber.wait_for(
            lambda s: sum(len(v) for v in _unique_by_device(s.messages).values()) == expected
        )
        streams = _unique_by_device(subscriber.messages)
    assert set(streams) == set(heads)
    for device, events in streams.items():
        assert [e["seq"] for e in events] == list(range(1, heads[device] + 1))
        verdict = verify_chain(link_of_wire_event(e) for e in events)
        assert verdict.status is ChainStatus.VERIFIED, (device, verdict.problem)
    kinds = {e["type"] for events in streams.values() for e in events}
    # An hour of simulated clinic time: sessions, punches, and wear reports happen.
    assert {"agent.started", "cartridge.installed", "session.started", "cores.punched"} <= kinds
