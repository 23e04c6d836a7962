"""``coreline agent`` and ``coreline simulate`` as operators run them, against a
real Mosquitto (and, to stop them mid-connect, a listener that never answers)."""

import os
import signal
import socket
import subprocess
import sys
import threading
import time
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
from tests.support.postgres import free_port
from tests.support.streams import punch_data
from tests.support.subscriber import RecordingSubscriber


@pytest.fixture
def broker() -> Iterator[TemporaryMosquitto]:
    with TemporaryMosquitto() as server:
        yield server


def _coreline(
    *args: str, stdin: bytes = b"", timeout: float = 120
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "services", *args],
        input=stdin, capture_output=True, env=_env(), timeout=timeout, check=False,
    )  # fmt: skip


def _env() -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if not key.startswith("CORELINE_")}


def _started_agent(device_id: str, mqtt_url: str, outbox: Path) -> subprocess.Popen[bytes]:
    """``coreline agent`` with its standard input held open, as under a firmware."""
    command = [sys.executable, "-m", "services", "agent", "--device-id", device_id,
               "--mqtt-url", mqtt_url, "--outbox", str(outbox)]  # fmt: skip
    return subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=_env(),
    )  # fmt: skip


class SilentBroker:
    """A TCP listener that accepts connections and never says a word: a broker
    that hangs before its CONNACK."""

    def __init__(self) -> None:
        self.port = free_port()
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._listener.settimeout(0.1)
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                self._held.append(self._listener.accept()[0])
            except TimeoutError:
                continue

    def __enter__(self) -> "SilentBroker":
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for connection in [*self._held, self._listener]:
            connection.close()


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


def _clean_exit(process: subprocess.Popen[bytes], timeout: float) -> str:
    """Interrupt the process as Ctrl-C would; it must end by itself, quietly."""
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout)  # its input stays open all along, as a firmware's would
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise AssertionError(f"still running {timeout:.0f} s after Ctrl-C") from None
    _, stderr = process.communicate()
    log = stderr.decode(errors="replace")
    assert process.returncode == 0, log
    for trouble in ("Traceback", "Exception ignored", "Fatal Python error"):
        assert trouble not in log, log
    return log


def test_agent_interrupted_with_its_input_open_exits_cleanly(
    broker: TemporaryMosquitto, tmp_path: Path
) -> None:
    """Ctrl-C while the firmware's pipe is still open ends `coreline agent` with
    status 0 and nothing on stderr but its own summary and log lines."""
    topic = "coreline/v1/devices/HP-000910/events"
    with RecordingSubscriber(broker.port, topic) as subscriber:
        agent = _started_agent("HP-000910", broker.url, tmp_path / "outbox.db")
        assert agent.stdin is not None
        for n in range(1, 4):
            line = {"type": "cores.punched", "occurred_at": _t(n), "data": punch_data(n)}
            agent.stdin.write(orjson.dumps(line) + b"\n")
        agent.stdin.flush()
        assert subscriber.wait_for(lambda s: len(s.events()) >= 3)
        log = _clean_exit(agent, timeout=15)
    assert "3 events recorded, 0 lines refused, 0 unsent" in log


def test_agent_interrupted_before_the_broker_answers_exits(tmp_path: Path) -> None:
    """Ctrl-C while the connection still waits for its CONNACK ends `coreline agent`
    promptly: the abandoned attempt is not retried in another MQTT version."""
    with SilentBroker() as silent:
        agent = _started_agent("HP-000911", silent.url, tmp_path / "outbox.db")
        time.sleep(2.5)  # interpreter start-up, then the CONNECT is out, unanswered
        _clean_exit(agent, timeout=15)


def test_simulate_ends_within_seconds_of_its_duration(
    broker: TemporaryMosquitto, tmp_path: Path
) -> None:
    """`coreline simulate` with a thousand devices ends within about two seconds of
    its duration (plus the interpreter's start), its goodbye included."""
    started = time.monotonic()
    result = _coreline(
        "simulate", "--devices", "1000", "--speed", "60", "--duration", "6",
        "--mqtt-url", broker.url, "--outbox", str(tmp_path / "fleet.db"), timeout=90,
    )  # fmt: skip
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    assert elapsed < 6 + 4.5, f"took {elapsed:.1f} s"


def test_simulate_against_a_broker_that_never_answers_still_ends_on_time(
    tmp_path: Path,
) -> None:
    """`coreline simulate` whose broker never answers still ends about when its
    duration says, instead of hanging in its goodbye."""
    with SilentBroker() as silent:
        started = time.monotonic()
        result = _coreline(
            "simulate", "--devices", "20", "--duration", "3",
            "--mqtt-url", silent.url, "--outbox", str(tmp_path / "fleet.db"), timeout=60,
        )  # fmt: skip
        elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    assert elapsed < 3 + 4.5, f"took {elapsed:.1f} s"
