"""The broker security shipped in ``deploy/mosquitto``, on a real Mosquitto: the ACL file
verbatim, the configuration with only its paths and ports moved, and certificates from
``scripts/issue-device-cert``.

"Never delivered" is proven without sleeping: after the forbidden message the same
publisher sends an allowed one on the same connection; Mosquitto handles one
connection's packets in order, so once the allowed one has arrived the forbidden one
would have arrived before it."""

import os
import secrets
import shutil
import socket
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.client import MQTTMessage
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from tests.support.mosquitto import TemporaryMosquitto, find_mosquitto
from tests.support.postgres import free_port

REPOSITORY = Path(__file__).resolve().parents[2]
SHIPPED = REPOSITORY / "deploy" / "mosquitto"
ISSUE_CERT = REPOSITORY / "scripts" / "issue-device-cert"

NOT_AUTHORIZED = 0x87
TIMEOUT_S = 5.0
DEVICE_1 = "HP-000001"
DEVICE_2 = "HP-000002"
CLINICS = ("clinic-7", "clinic-9")


def events(device_id: str) -> str:
    return f"coreline/v1/devices/{device_id}/events"


def cmd(device_id: str) -> str:
    return f"coreline/v1/devices/{device_id}/cmd"


def alerts(clinic_id: str) -> str:
    return f"coreline/v1/clinics/{clinic_id}/alerts"


@dataclass(frozen=True)
class Identity:
    """A certificate and its key."""

    cert: Path
    key: Path


@dataclass(frozen=True)
class Credentials:
    """What a client offers: a client certificate, a username and password, both, or
    nothing."""

    identity: Identity | None = None
    username: str | None = None
    password: str | None = None


@dataclass(frozen=True)
class SecuredBroker:
    device_port: int
    service_port: int
    ca_cert: Path
    server: Identity
    devices: dict[str, Identity]
    passwords: dict[str, str]


def run_issue_cert(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ISSUE_CERT), *args], capture_output=True, text=True, check=False, timeout=30
    )


def issue_cert(*args: str) -> str:
    result = run_issue_cert(*args)
    assert result.returncode == 0, result.stderr
    return result.stdout


def derive_config(shipped: str, root: Path, device_port: int, service_port: int) -> str:
    """The shipped configuration with its container paths and public ports swapped for
    temporary ones, and nothing else changed."""
    moves = {
        "/mosquitto/config/": f"{root}/config/",
        "/mosquitto/data/": f"{root}/data/",
        "\nlistener 8883\n": f"\nlistener {device_port} 127.0.0.1\n",
        "\nlistener 8884\n": f"\nlistener {service_port} 127.0.0.1\n",
    }
    for shipped_text, temporary in moves.items():
        assert shipped_text in shipped, f"deploy/mosquitto/mosquitto.conf lost {shipped_text!r}"
        shipped = shipped.replace(shipped_text, temporary)
    return shipped


def hand_over_tree(root: Path) -> None:
    TemporaryMosquitto.hand_over(root)
    for path in root.rglob("*"):
        TemporaryMosquitto.hand_over(path)


def wait_listening(process: subprocess.Popen[bytes], ports: tuple[int, ...], log: Path) -> None:
    deadline = time.monotonic() + 10
    waiting = list(ports)
    while waiting:
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"mosquitto did not start: {log.read_text(errors='replace')}")
        try:
            with socket.create_connection(("127.0.0.1", waiting[0]), timeout=0.2):
                waiting.pop(0)
        except OSError:
            time.sleep(0.05)


def write_broker_files(root: Path, ca: Path) -> dict[str, str]:
    """Lay out ``root`` like the container's /mosquitto: the shipped ACL, a password file,
    the fleet CA and a server certificate for 127.0.0.1. Returns the passwords."""
    certs = root / "config" / "certs"
    certs.mkdir(parents=True)
    (root / "data").mkdir()
    issue_cert(*signed_by(ca), "--server", "127.0.0.1", "--out", str(certs))
    shutil.copyfile(ca / "ca.crt", certs / "fleet-ca.crt")
    shutil.copyfile(SHIPPED / "acl", root / "config" / "acl")
    passwords = {user: secrets.token_urlsafe(12) for user in ("gateway", "api", *CLINICS)}
    mosquitto_passwd = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
    for user, password in passwords.items():
        create = ["-c"] if user == "gateway" else []
        subprocess.run(
            [mosquitto_passwd, *create, "-b", str(root / "config" / "passwd"), user, password],
            check=True,
            capture_output=True,
        )
    return passwords


def signed_by(ca: Path) -> tuple[str, ...]:
    return ("--ca-cert", str(ca / "ca.crt"), "--ca-key", str(ca / "ca.key"))


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredBroker]:
    """Mosquitto running the shipped ACL and configuration, with a fleet CA, two devices,
    a server certificate for 127.0.0.1 and password accounts for the services and two
    clinics."""
    pki = tmp_path_factory.mktemp("pki")
    issue_cert("--init-ca", str(pki / "ca"))
    for device_id in (DEVICE_1, DEVICE_2):
        issue_cert(*signed_by(pki / "ca"), "--device", device_id, "--out", str(pki / "devices"))

    # mkdtemp, not tmp_path: the broker drops to the mosquitto user, who must reach it.
    root = Path(tempfile.mkdtemp(prefix="coreline-broker-acl-"))
    process: subprocess.Popen[bytes] | None = None
    try:
        passwords = write_broker_files(root, pki / "ca")
        device_port, service_port = free_port(), free_port()
        config = root / "config" / "mosquitto.conf"
        shipped = (SHIPPED / "mosquitto.conf").read_text()
        config.write_text(derive_config(shipped, root, device_port, service_port))
        hand_over_tree(root)
        with (root / "mosquitto.log").open("wb") as log:
            process = subprocess.Popen(
                [find_mosquitto(), "-c", str(config)], stdout=log, stderr=subprocess.STDOUT
            )
        wait_listening(process, (device_port, service_port), root / "mosquitto.log")
        yield SecuredBroker(
            device_port=device_port,
            service_port=service_port,
            ca_cert=pki / "ca" / "ca.crt",
            server=Identity(root / "config/certs/server.crt", root / "config/certs/server.key"),
            devices={
                device_id: Identity(
                    pki / "devices" / f"{device_id}.crt", pki / "devices" / f"{device_id}.key"
                )
                for device_id in (DEVICE_1, DEVICE_2)
            },
            passwords=passwords,
        )
    finally:
        if process is not None:
            process.terminate()
            process.wait(timeout=15)
        shutil.rmtree(root, ignore_errors=True)


class Connection:
    """One MQTT 5 client over TLS that never reconnects, with blocking helpers that
    return what the broker answered."""

    def __init__(
        self, broker: SecuredBroker, port: int, client_id: str, credentials: Credentials
    ) -> None:
        self._client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv5,
            reconnect_on_failure=False,
        )
        identity = credentials.identity
        self._client.tls_set(
            ca_certs=str(broker.ca_cert),
            certfile=str(identity.cert) if identity else None,
            keyfile=str(identity.key) if identity else None,
        )
        if credentials.username is not None:
            self._client.username_pw_set(credentials.username, credentials.password)
        self._port = port
        self._changed = threading.Condition()
        self._answers: dict[int | str, list[ReasonCode]] = {}
        """Keyed by message id for SUBACK and PUBACK, else "connack" or "disconnect"."""
        self.received: list[tuple[str, bytes]] = []
        self._client.on_connect = lambda _c, _u, _f, reason, _p: self._answer("connack", [reason])
        self._client.on_disconnect = lambda _c, _u, _f, reason, _p: self._answer(
            "disconnect", [reason]
        )
        self._client.on_subscribe = lambda _c, _u, mid, reasons, _p: self._answer(mid, reasons)
        self._client.on_publish = lambda _c, _u, mid, reason, _p: self._answer(mid, [reason])
        self._client.on_message = self._on_message

    @property
    def disconnected(self) -> bool:
        with self._changed:
            return "disconnect" in self._answers

    def connect(self) -> ReasonCode | None:
        """The CONNACK reason code, or ``None`` when the broker dropped the connection
        before answering (a refused TLS handshake)."""
        try:
            self._client.connect("127.0.0.1", self._port, keepalive=10)
        except OSError:
            return None
        self._client.loop_start()
        self._wait(lambda: "connack" in self._answers or "disconnect" in self._answers)
        with self._changed:
            return self._answers.get("connack", [None])[0]

    def subscribe(self, topic_filter: str) -> list[ReasonCode]:
        result, mid = self._client.subscribe(topic_filter, qos=1)
        assert result == mqtt.MQTT_ERR_SUCCESS
        assert mid is not None
        return self._acknowledgement(mid)

    def publish(self, topic: str, payload: bytes) -> ReasonCode:
        """Publish at QoS 1 and return the PUBACK reason code."""
        return self._acknowledgement(self._client.publish(topic, payload, qos=1).mid)[0]

    def wait_for(self, payload: bytes) -> list[tuple[str, bytes]]:
        """Everything received so far, once ``payload`` is among it."""
        self._wait(lambda: any(body == payload for _, body in self.received))
        with self._changed:
            return list(self.received)

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def _acknowledgement(self, mid: int) -> list[ReasonCode]:
        self._wait(lambda: mid in self._answers)
        with self._changed:
            return self._answers.pop(mid)

    def _wait(self, condition: Callable[[], bool]) -> None:
        with self._changed:
            assert self._changed.wait_for(condition, timeout=TIMEOUT_S), "broker did not answer"

    def _answer(self, key: int | str, reasons: list[ReasonCode]) -> None:
        with self._changed:
            self._answers[key] = reasons
            self._changed.notify_all()

    def _on_message(self, _client: mqtt.Client, _userdata: Any, message: MQTTMessage) -> None:
        with self._changed:
            self.received.append((message.topic, bytes(message.payload)))
            self._changed.notify_all()


class Clients:
    """Connections that must succeed, all closed when the test ends."""

    def __init__(self, broker: SecuredBroker) -> None:
        self._broker = broker
        self._opened: list[Connection] = []

    def device(self, device_id: str, client_id: str | None = None) -> Connection:
        """A handpiece on the device listener, with its fleet certificate."""
        credentials = Credentials(identity=self._broker.devices[device_id])
        return self._open(self._broker.device_port, client_id or f"agent-{device_id}", credentials)

    def account(self, user: str, client_id: str | None = None) -> Connection:
        """A password account on the service listener."""
        credentials = Credentials(username=user, password=self._broker.passwords[user])
        client_id = client_id or f"{user}-{secrets.token_hex(3)}"
        return self._open(self._broker.service_port, client_id, credentials)

    def close_all(self) -> None:
        for connection in self._opened:
            connection.close()

    def _open(self, port: int, client_id: str, credentials: Credentials) -> Connection:
        connection = Connection(self._broker, port, client_id, credentials)
        self._opened.append(connection)
        reason = connection.connect()
        assert reason is not None, f"{client_id}: connection dropped"
        assert not reason.is_failure, f"{client_id}: {reason}"
        return connection


@pytest.fixture
def clients(broker: SecuredBroker) -> Iterator[Clients]:
    opened = Clients(broker)
    yield opened
    opened.close_all()


def attempt(broker: SecuredBroker, port: int, credentials: Credentials) -> ReasonCode | None:
    """Try to connect; the CONNACK reason code, or ``None`` if TLS refused us."""
    connection = Connection(broker, port, f"intruder-{secrets.token_hex(3)}", credentials)
    try:
        return connection.connect()
    finally:
        connection.close()


def test_device_publishes_its_events_and_the_shared_gateway_subscription_gets_them(
    clients: Clients,
) -> None:
    """A device publishes to its own events topic over mutual TLS, and the gateway
    (password account, other listener) receives it through its shared subscription."""
    gateway = clients.account("gateway")
    (granted,) = gateway.subscribe(f"$share/coreline-gateway/{events('+')}")
    assert not granted.is_failure
    handpiece = clients.device(DEVICE_1)

    reason = handpiece.publish(events(DEVICE_1), b"batch-1")

    assert not reason.is_failure
    assert gateway.wait_for(b"batch-1") == [(events(DEVICE_1), b"batch-1")]


def test_device_cannot_publish_as_another_device(clients: Clients) -> None:
    """HP-000001 publishing on HP-000002's events topic gets PUBACK 0x87 Not authorized,
    and the gateway never sees the message."""
    gateway = clients.account("gateway")
    gateway.subscribe(f"$share/coreline-gateway/{events('+')}")
    handpiece = clients.device(DEVICE_1)

    forged = handpiece.publish(events(DEVICE_2), b"forged")
    handpiece.publish(events(DEVICE_1), b"sentinel")

    assert forged.value == NOT_AUTHORIZED
    assert gateway.wait_for(b"sentinel") == [(events(DEVICE_1), b"sentinel")]


def test_device_cannot_read_another_devices_commands(clients: Clients) -> None:
    """HP-000001 gets nothing from HP-000002's cmd topic. Mosquitto 2.0 does not check
    SUBSCRIBE against an acl_file (it grants the SUBACK) but checks every delivery;
    a broker that refuses the SUBACK instead passes too."""
    gateway = clients.account("gateway")
    handpiece = clients.device(DEVICE_1)
    (other,) = handpiece.subscribe(cmd(DEVICE_2))
    (own,) = handpiece.subscribe(cmd(DEVICE_1))

    gateway.publish(cmd(DEVICE_2), b"resend-for-2")
    gateway.publish(cmd(DEVICE_1), b"sentinel")

    assert not own.is_failure
    assert other.is_failure or other.value == 1  # refused, or granted at QoS 1
    assert handpiece.wait_for(b"sentinel") == [(cmd(DEVICE_1), b"sentinel")]


def test_gateway_command_reaches_the_device(clients: Clients) -> None:
    """The gateway may publish a resend command, and the addressed device receives it."""
    gateway = clients.account("gateway")
    handpiece = clients.device(DEVICE_1)
    handpiece.subscribe(cmd(DEVICE_1))
    command = b'{"cmd": "resend", "from_seq": 3, "to_seq": 5}'

    assert not gateway.publish(cmd(DEVICE_1), command).is_failure
    assert handpiece.wait_for(command) == [(cmd(DEVICE_1), command)]


@pytest.mark.parametrize("offered", ["nothing", "gateway password", "server certificate"])
def test_device_listener_requires_a_fleet_client_certificate(
    broker: SecuredBroker, offered: str
) -> None:
    """Without a client certificate (even with a valid password), or with one not made
    for clients, the device listener refuses the TLS handshake."""
    credentials = {
        "nothing": Credentials(),
        "gateway password": Credentials(username="gateway", password=broker.passwords["gateway"]),
        "server certificate": Credentials(identity=broker.server),  # same CA, serverAuth only
    }[offered]

    assert attempt(broker, broker.device_port, credentials) is None


@pytest.mark.parametrize("offered", ["nothing", "wrong password", "device certificate"])
def test_service_listener_requires_a_password(broker: SecuredBroker, offered: str) -> None:
    """The password listener answers CONNACK Not authorized to anonymous clients, a wrong
    password, and a device certificate offered instead of a password."""
    credentials = {
        "nothing": Credentials(),
        "wrong password": Credentials(username="gateway", password=secrets.token_urlsafe(12)),
        "device certificate": Credentials(identity=broker.devices[DEVICE_1]),
    }[offered]

    reason = attempt(broker, broker.service_port, credentials)

    assert reason is not None
    assert reason.value == NOT_AUTHORIZED


def test_device_cannot_knock_another_client_off_by_reusing_its_client_id(clients: Clients) -> None:
    """On the device listener the client id is replaced by the device id, so a device
    connecting with the gateway's client id does not take over the gateway's session."""
    gateway = clients.account("gateway", client_id="coreline-gateway-1")
    clients.device(DEVICE_2, client_id="coreline-gateway-1")

    assert not gateway.subscribe(events(DEVICE_2))[0].is_failure
    assert not gateway.disconnected


def test_clinic_reads_only_its_own_alerts_and_cannot_forge_them(clients: Clients) -> None:
    """A clinic account (username = clinic id) receives its own alerts topic only, even
    through a wildcard, and may not publish alerts itself; the api account may."""
    clinic_7 = clients.account("clinic-7")
    clinic_9 = clients.account("clinic-9")
    clinic_7.subscribe(alerts("+"))
    clinic_7.subscribe(alerts("clinic-9"))
    clinic_9.subscribe(alerts("clinic-9"))
    api = clients.account("api")

    assert clinic_7.publish(alerts("clinic-7"), b"forged").value == NOT_AUTHORIZED
    for payload, clinic_id in ((b"a9", "clinic-9"), (b"a7", "clinic-7"), (b"a9b", "clinic-9")):
        assert not api.publish(alerts(clinic_id), payload).is_failure

    assert clinic_7.wait_for(b"a7") == [(alerts("clinic-7"), b"a7")]
    assert clinic_9.wait_for(b"a9b") == [(alerts("clinic-9"), b"a9"), (alerts("clinic-9"), b"a9b")]


def test_issue_device_cert_refuses_bad_ids_and_keeps_keys_private(tmp_path: Path) -> None:
    """The script rejects ids outside the protocol's pattern, writes the key with mode
    600, and issues a clientAuth certificate whose CN is the device id."""
    issue_cert("--init-ca", str(tmp_path / "ca"))
    signer = signed_by(tmp_path / "ca")
    for bad_id in ("hp-000001", "HP", "HP/000001", "-HP-000001", "gateway"):
        result = run_issue_cert(*signer, "--device", bad_id, "--out", str(tmp_path / "out"))
        assert result.returncode == 1, bad_id
        assert "does not match" in result.stderr, bad_id
    assert not (tmp_path / "out").exists()

    output = issue_cert(*signer, "--device", "HP-000123", "--out", str(tmp_path / "out"))

    key = tmp_path / "out" / "HP-000123.key"
    assert f"wrote {key}" in output
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    text = subprocess.run(
        ["openssl", "x509", "-in", str(tmp_path / "out" / "HP-000123.crt"), "-noout", "-text"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert "Subject: CN = HP-000123" in text
    assert "TLS Web Client Authentication" in text
    assert "CA:FALSE" in text
