"""Device identity against a real Mosquitto running the shipped configuration (mutual
TLS on the device listener, the fleet CA from enrolment as its ``cafile``, the CRL the
platform writes as its ``crlfile``): enrol → connect → renew → revoke → the broker
refuses the revoked certificate and still accepts the renewed one; an expired
certificate is refused too."""

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from fleet_ca import create_fleet_ca, revoked_serials
from tests.support.identity import Handpiece, Platform, running_platform
from tests.support.secured_broker import (
    Clients,
    Credentials,
    Identity,
    SecuredBroker,
    attempt,
    running_secured_broker,
)

DEVICE = "HP-000701"
SERIAL = "SN-2026-000701"


@dataclass
class Setting:
    broker: SecuredBroker
    platform: Platform
    keys: Path

    def keep(self, name: str, answer: dict[str, Any], key: bytes) -> Identity:
        """What the handpiece keeps of an answer: its certificate, and the key."""
        cert, key_file = self.keys / f"{name}.crt", self.keys / f"{name}.key"
        cert.write_text(answer["certificate"])
        key_file.write_bytes(key)
        return Identity(cert, key_file)

    def connects(self, identity: Identity) -> bool:
        """Whether the device listener lets a client with ``identity`` in."""
        reason = attempt(self.broker, self.broker.device_port, Credentials(identity=identity))
        return reason is not None and not reason.is_failure


@contextmanager
def _setting(sqlite_url: str, tmp_path: Path, **changes: Any) -> Iterator[Setting]:
    """The shipped broker trusting the platform's fleet CA, the platform writing the
    broker's CRL and signalling it through a pid file, as on one host."""
    ca = tmp_path / "fleet-ca"
    create_fleet_ca(ca)
    keys = tmp_path / "handpiece"
    keys.mkdir()
    with running_secured_broker(tmp_path / "pki", [], ["clinic-7"], ca=ca) as broker:
        assert broker.crl is not None
        pid_file = tmp_path / "broker.pid"
        pid_file.write_text(f"{broker.pid}\n")
        with running_platform(
            sqlite_url, tmp_path, crl_file=broker.crl, broker_pid_file=pid_file, **changes
        ) as platform:
            yield Setting(broker, platform, keys)


@pytest.fixture
def setting(sqlite_url: str, tmp_path: Path) -> Iterator[Setting]:
    with _setting(sqlite_url, tmp_path) as made:
        yield made


def _until(condition: Callable[[], bool], within_s: float = 10.0) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return condition()


def test_enrol_connect_renew_revoke_and_the_broker_refuses_the_revoked(
    setting: Setting,
) -> None:
    """The enrolled certificate connects and publishes on the device's own topic; the
    renewed one (a new key) connects too; once the enrolled one is revoked, the CRL the
    platform wrote and the broker reloaded (SIGHUP) turns it away at the handshake,
    while the renewed one still gets in."""
    platform = setting.platform
    handpiece = Handpiece(DEVICE, SERIAL)
    enrolled = setting.keep("enrolled", platform.enrolled(handpiece), handpiece.tls_key)

    assert setting.connects(enrolled)
    clients = Clients(setting.broker)
    setting.broker.devices[DEVICE] = enrolled
    try:
        device = clients.device(DEVICE)
        assert not device.publish(f"coreline/v1/devices/{DEVICE}/events", b"batch").is_failure
    finally:
        clients.close_all()

    renewing = Handpiece(DEVICE, SERIAL, seal=handpiece.seal)
    answer = platform.client.post(
        f"/api/v1/devices/{DEVICE}/certificate", json=handpiece.renewal(renewing.csr())
    )
    assert answer.status_code == 201, answer.text
    renewed = setting.keep("renewed", answer.json(), renewing.tls_key)
    assert setting.connects(renewed)

    identity = platform.client.get(
        f"/api/v1/devices/{DEVICE}/identity", headers=platform.manufacturer
    ).json()
    old = identity["certificates"][-1]
    revoked = platform.client.delete(
        f"/api/v1/devices/{DEVICE}/certificates/{old['fingerprint']}",
        params={"reason": "handpiece reported stolen"}, headers=platform.manufacturer,
    )  # fmt: skip
    assert revoked.status_code == 202, revoked.text
    assert setting.broker.crl is not None
    assert revoked_serials(setting.broker.crl.read_bytes()) == {old["serial"]}

    assert _until(lambda: not setting.connects(enrolled)), "the revoked certificate got in"
    assert setting.connects(renewed)


def test_an_expired_certificate_is_refused(sqlite_url: str, tmp_path: Path) -> None:
    """A certificate past its lifetime fails the handshake, revoked or not."""
    lifetime = timedelta(seconds=3)
    with _setting(sqlite_url, tmp_path, certificate_lifetime=lifetime) as setting:
        handpiece = Handpiece(DEVICE, SERIAL)
        answer = setting.platform.enrolled(handpiece)
        certificate = setting.keep("short", answer, handpiece.tls_key)
        assert setting.connects(certificate)
        time.sleep(lifetime.total_seconds() + 0.5)
        assert not setting.connects(certificate)
