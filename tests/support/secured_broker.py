"""The broker security shipped in ``deploy/mosquitto`` on a real Mosquitto, and MQTT 5
clients to probe it: the ACL file verbatim, the configuration with only its paths and
ports moved, and certificates and the CRL from the fleet CA's own code (``fleet_ca``),
as ``coreline fleet-ca`` and enrolment make them."""

import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.client import MQTTMessage
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from fleet_ca import (
    CheckedRequest,
    FleetCa,
    certificate_request,
    check_request,
    create_fleet_ca,
    public_key_of,
    write_new_key,
)
from tests.support.mosquitto import TemporaryMosquitto, find_mosquitto
from tests.support.postgres import free_port

REPOSITORY = Path(__file__).resolve().parents[2]
SHIPPED = REPOSITORY / "deploy" / "mosquitto"
CERTIFICATE_LIFETIME = timedelta(days=2)

TIMEOUT_S = 5.0


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
    crl: Path | None = None
    """The CRL the broker reads (``crlfile``): write it, then ``reload``."""
    pid: int | None = None

    def reload(self) -> None:
        """SIGHUP: Mosquitto reads its configuration, and its CRL, again."""
        assert self.pid is not None, "this broker was not started here"
        signal_broker(self.pid)


def signal_broker(pid: int) -> None:
    os.kill(pid, signal.SIGHUP)


def issue_device(ca: Path, device_id: str, out: Path) -> Identity:
    """A device client certificate from the fleet CA in ``ca`` (CN = the device id),
    with its key: ``out/<device>.crt`` and ``out/<device>.key``."""
    out.mkdir(parents=True, exist_ok=True)
    key = write_new_key(out / f"{device_id}.key")
    request = check_request(certificate_request(key, device_id), device_id)
    assert isinstance(request, CheckedRequest), request
    issued = FleetCa.load(ca).issue_device(request, lifetime=CERTIFICATE_LIFETIME)
    (out / f"{device_id}.crt").write_bytes(issued.pem)
    return Identity(out / f"{device_id}.crt", out / f"{device_id}.key")


def issue_server(ca: Path, names: Sequence[str], out: Path) -> Identity:
    """The broker's certificate for ``names``: ``out/server.crt`` and ``out/server.key``."""
    out.mkdir(parents=True, exist_ok=True)
    key = write_new_key(out / "server.key")
    issued = FleetCa.load(ca).issue_server(public_key_of(key), names, lifetime=CERTIFICATE_LIFETIME)
    (out / "server.crt").write_bytes(issued.pem)
    return Identity(out / "server.crt", out / "server.key")


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


def write_broker_files(root: Path, ca: Path, clinic_ids: Sequence[str]) -> dict[str, str]:
    """Lay out ``root`` like the container's /mosquitto: the shipped ACL, a password file,
    the fleet CA with an empty CRL and a server certificate for 127.0.0.1. Returns the
    passwords."""
    certs = root / "config" / "certs"
    certs.mkdir(parents=True)
    (root / "data").mkdir()
    issue_server(ca, ["127.0.0.1"], certs)
    shutil.copyfile(ca / "ca.crt", certs / "fleet-ca.crt")
    empty = FleetCa.load(ca).revocation_list([], valid_for=CERTIFICATE_LIFETIME)
    (certs / "fleet-ca.crl").write_bytes(empty)
    (certs / "fleet-ca.crl").chmod(0o644)
    shutil.copyfile(SHIPPED / "acl", root / "config" / "acl")
    passwords = {user: secrets.token_urlsafe(12) for user in ("gateway", "api", *clinic_ids)}
    mosquitto_passwd = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
    for user, password in passwords.items():
        create = ["-c"] if user == "gateway" else []
        subprocess.run(
            [mosquitto_passwd, *create, "-b", str(root / "config" / "passwd"), user, password],
            check=True,
            capture_output=True,
        )
    return passwords


@contextmanager
def running_secured_broker(
    pki: Path, device_ids: Sequence[str], clinic_ids: Sequence[str], *, ca: Path | None = None
) -> Iterator[SecuredBroker]:
    """Mosquitto running the shipped ACL and configuration, with a fleet CA (``ca``, or
    one made in ``pki``), a certificate per device, a server certificate for 127.0.0.1,
    an empty CRL and password accounts for the gateway, the api and each clinic."""
    if ca is None:
        ca = pki / "ca"
        create_fleet_ca(ca)
    for device_id in device_ids:
        issue_device(ca, device_id, pki / "devices")

    # mkdtemp, not tmp_path: the broker drops to the mosquitto user, who must reach it.
    root = Path(tempfile.mkdtemp(prefix="coreline-broker-acl-"))
    process: subprocess.Popen[bytes] | None = None
    try:
        passwords = write_broker_files(root, ca, clinic_ids)
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
            ca_cert=ca / "ca.crt",
            server=Identity(root / "config/certs/server.crt", root / "config/certs/server.key"),
            devices={
                device_id: Identity(
                    pki / "devices" / f"{device_id}.crt", pki / "devices" / f"{device_id}.key"
                )
                for device_id in device_ids
            },
            passwords=passwords,
            crl=root / "config" / "certs" / "fleet-ca.crl",
            pid=process.pid,
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
        # Messages spelled out: pytest does not rewrite asserts outside test modules.
        assert result == mqtt.MQTT_ERR_SUCCESS, f"subscribe {topic_filter!r}: error {result}"
        assert mid is not None, f"subscribe {topic_filter!r}: no message id"
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


def attempt(broker: SecuredBroker, port: int, credentials: Credentials) -> ReasonCode | None:
    """Try to connect; the CONNACK reason code, or ``None`` if TLS refused us."""
    connection = Connection(broker, port, f"intruder-{secrets.token_hex(3)}", credentials)
    try:
        return connection.connect()
    finally:
        connection.close()
