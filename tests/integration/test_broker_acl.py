"""The broker security shipped in ``deploy/mosquitto``, on a real Mosquitto: the ACL file
verbatim, the configuration with only its paths and ports moved, and certificates from
the fleet CA (``fleet_ca``).

"Never delivered" is proven without sleeping: after the forbidden message the same
publisher sends an allowed one on the same connection; Mosquitto handles one
connection's packets in order, so once the allowed one has arrived the forbidden one
would have arrived before it."""

import os
import secrets
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleet_ca import RequestRefusal, certificate_request, check_request, new_key_pem
from tests.support.secured_broker import (
    Clients,
    Credentials,
    SecuredBroker,
    attempt,
    issue_device,
    running_secured_broker,
)

NOT_AUTHORIZED = 0x87
DEVICE_1 = "HP-000001"
DEVICE_2 = "HP-000002"
CLINICS = ("clinic-7", "clinic-9")


def events(device_id: str) -> str:
    return f"coreline/v1/devices/{device_id}/events"


def cmd(device_id: str) -> str:
    return f"coreline/v1/devices/{device_id}/cmd"


def acks(device_id: str) -> str:
    return f"coreline/v1/devices/{device_id}/acks"


def alerts(clinic_id: str) -> str:
    return f"coreline/v1/clinics/{clinic_id}/alerts"


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredBroker]:
    """Mosquitto running the shipped ACL and configuration, with a fleet CA, two devices,
    a server certificate for 127.0.0.1 and password accounts for the services and two
    clinics."""
    pki = tmp_path_factory.mktemp("pki")
    with running_secured_broker(pki, (DEVICE_1, DEVICE_2), CLINICS) as secured:
        yield secured


@pytest.fixture
def clients(broker: SecuredBroker) -> Iterator[Clients]:
    opened = Clients(broker)
    yield opened
    opened.close_all()


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


def test_device_reads_only_its_own_acks_and_cannot_forge_them(clients: Clients) -> None:
    """The gateway publishes platform acknowledgements; a device receives its own acks
    topic only (even through a wildcard) and may not publish on it."""
    gateway = clients.account("gateway")
    handpiece = clients.device(DEVICE_1)
    handpiece.subscribe(acks("+"))
    handpiece.subscribe(acks(DEVICE_2))
    own_ack = b'{"stored_through":7,"hash":"' + b"a" * 64 + b'"}'

    assert handpiece.publish(acks(DEVICE_1), b"forged").value == NOT_AUTHORIZED
    assert not gateway.publish(acks(DEVICE_2), b"for-2").is_failure
    assert not gateway.publish(acks(DEVICE_1), own_ack).is_failure

    assert handpiece.wait_for(own_ack) == [(acks(DEVICE_1), own_ack)]


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


def test_only_the_api_account_publishes_log_checkpoints_and_everyone_reads_them(
    clients: Clients,
) -> None:
    """The projector's log keeper (api account) publishes the signed checkpoint; a
    clinic and a device both receive it, and neither may publish one."""
    topic = "coreline/v1/log/checkpoint"
    clinic = clients.account("clinic-7")
    handpiece = clients.device(DEVICE_1)
    clinic.subscribe(topic)
    handpiece.subscribe(topic)

    assert clinic.publish(topic, b"forged by a clinic").value == NOT_AUTHORIZED
    assert handpiece.publish(topic, b"forged by a device").value == NOT_AUTHORIZED
    assert not clients.account("api").publish(topic, b"signed note").is_failure

    assert clinic.wait_for(b"signed note") == [(topic, b"signed note")]
    assert handpiece.wait_for(b"signed note") == [(topic, b"signed note")]


def test_the_fleet_ca_refuses_bad_ids_and_keeps_keys_private(tmp_path: Path) -> None:
    """``coreline fleet-ca init`` writes the CA's key with mode 600; the CA signs no
    request for an id outside the protocol's pattern (the ACL tells devices from the
    services' accounts by it), and issues a clientAuth certificate whose CN is the
    device id."""
    result = subprocess.run(
        [sys.executable, "-m", "services", "fleet-ca", "init", "--dir", str(tmp_path / "ca")],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(os.stat(tmp_path / "ca" / "ca.key").st_mode) == 0o600
    key = new_key_pem()
    for bad_id in ("hp-000001", "HP", "HP/000001", "-HP-000001", "gateway"):
        refusal = check_request(certificate_request(key, "HP-000001"), bad_id)
        assert isinstance(refusal, RequestRefusal), bad_id
        assert "does not match" in refusal.reason, bad_id

    device = issue_device(tmp_path / "ca", "HP-000123", tmp_path / "out")

    assert stat.S_IMODE(os.stat(device.key).st_mode) == 0o600
    text = subprocess.run(
        ["openssl", "x509", "-in", str(device.cert), "-noout", "-text"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert "Subject: CN = HP-000123" in text
    assert "TLS Web Client Authentication" in text
    assert "CA:FALSE" in text
