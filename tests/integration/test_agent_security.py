"""The agent reaches a locked-down broker: mutual TLS with a device certificate
from the fleet CA, or a per-device password; without them it gets nowhere."""

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from tests.support.mosquitto import TemporaryMosquitto
from tests.support.pki import FleetCa
from tests.support.postgres import free_port
from tests.support.streams import punch_data
from tests.support.subscriber import RecordingSubscriber

DEVICE = "HP-000321"
TOPIC = f"coreline/v1/devices/{DEVICE}/events"
FIRMWARE = b"".join(
    orjson.dumps({"type": "cores.punched", "occurred_at": f"2026-11-25T09:00:{n:02d}.000Z",
                  "data": punch_data(n)}) + b"\n"
    for n in range(1, 11)
)  # fmt: skip


def _agent(
    tmp_path: Path, mqtt_url: str, timeout: float, **tls: Path
) -> subprocess.CompletedProcess[bytes]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("CORELINE_")}
    env |= {f"CORELINE_MQTT_{name.upper()}": str(path) for name, path in tls.items()}
    command = [sys.executable, "-m", "services", "agent", "--device-id", DEVICE,
               "--mqtt-url", mqtt_url, "--outbox", str(tmp_path / "outbox.db")]  # fmt: skip
    try:
        return subprocess.run(command, input=FIRMWARE, capture_output=True, env=env,
                              timeout=timeout, check=False)  # fmt: skip
    except subprocess.TimeoutExpired as expired:
        return subprocess.CompletedProcess(command, -1, expired.stdout, expired.stderr)


@pytest.fixture
def tls_broker(tmp_path: Path) -> Iterator[tuple[TemporaryMosquitto, FleetCa, int]]:
    broker = TemporaryMosquitto()
    pki = broker.root / "pki"
    pki.mkdir()
    ca = FleetCa(pki)
    server = ca.issue("127.0.0.1", ip_address="127.0.0.1")
    for path in pki.iterdir():
        TemporaryMosquitto.hand_over(path)
    tls_port = free_port()
    broker.extra_config = (
        f"listener {tls_port} 127.0.0.1\n"
        f"cafile {ca.cert}\ncertfile {server.cert}\nkeyfile {server.key}\n"
        "require_certificate true\nuse_identity_as_username true\n"
    )
    with broker:
        yield broker, ca, tls_port


def test_mutual_tls_with_a_fleet_certificate_delivers(
    tls_broker: tuple[TemporaryMosquitto, FleetCa, int], tmp_path: Path
) -> None:
    """An agent holding a fleet-CA device certificate delivers its events over mutual TLS."""
    broker, ca, tls_port = tls_broker
    device = ca.issue(DEVICE)
    with RecordingSubscriber(broker.port, TOPIC) as subscriber:
        result = _agent(
            tmp_path, f"mqtts://127.0.0.1:{tls_port}", 60,
            ca_file=ca.cert, cert_file=device.cert, key_file=device.key,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr.decode()
        assert subscriber.wait_for(lambda s: len(s.events()) >= 10)


def test_without_a_client_certificate_the_broker_lets_nothing_through(
    tls_broker: tuple[TemporaryMosquitto, FleetCa, int], tmp_path: Path
) -> None:
    """Without a client certificate the TLS broker lets none of the agent's events through."""
    broker, ca, tls_port = tls_broker
    with RecordingSubscriber(broker.port, TOPIC) as subscriber:
        result = _agent(tmp_path, f"mqtts://127.0.0.1:{tls_port}", 4, ca_file=ca.cert)
        assert result.returncode != 0  # still waiting to deliver when stopped
        time.sleep(0.5)
        assert subscriber.events() == []


def test_per_device_passwords(tmp_path: Path) -> None:
    """A wrong device password gets nothing through, the right one delivers, neither is logged."""
    broker = TemporaryMosquitto(allow_anonymous=False)
    passwords = broker.root / "passwords"
    for user, secret in ((DEVICE, "s3cret-device"), ("watcher", "s3cret-watcher")):
        flags = ["-b", "-c"] if not passwords.exists() else ["-b"]
        subprocess.run(["mosquitto_passwd", *flags, str(passwords), user, secret], check=True)
    TemporaryMosquitto.hand_over(passwords)
    passwords.chmod(0o600)
    broker.extra_config = f"password_file {passwords}\n"
    with (
        broker,
        RecordingSubscriber(
            broker.port, TOPIC, credentials=("watcher", "s3cret-watcher")
        ) as subscriber,
    ):
        wrong = _agent(tmp_path / "wrong", f"mqtt://{DEVICE}:guess@127.0.0.1:{broker.port}", 4)
        assert wrong.returncode != 0
        assert subscriber.events() == []
        right = _agent(tmp_path, f"mqtt://{DEVICE}:s3cret-device@127.0.0.1:{broker.port}", 60)
        assert right.returncode == 0, right.stderr.decode()
        assert subscriber.wait_for(lambda s: len(s.events()) >= 10)
        assert b"s3cret" not in right.stderr + wrong.stderr  # never logged
