"""The shipped broker ACL and the config topic (protocol v1.2), on a real Mosquitto:
a device reads its own desired configuration only and never writes one; only the
``api`` account (the projector's configuration delivery) publishes configurations and
tracked commands.  "Never delivered" is proven as in ``test_broker_acl``: an allowed
message sent after the forbidden one on the same connection arrives alone."""

from collections.abc import Iterator

import pytest

from tests.support.secured_broker import Clients, SecuredBroker, running_secured_broker

NOT_AUTHORIZED = 0x87
DEVICE_1 = "HP-000031"
DEVICE_2 = "HP-000032"


def config(device_id: str) -> str:
    return f"coreline/v1/devices/{device_id}/config"


def cmd(device_id: str) -> str:
    return f"coreline/v1/devices/{device_id}/cmd"


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredBroker]:
    """Mosquitto with the shipped ACL and configuration, two devices and the accounts."""
    with running_secured_broker(tmp_path_factory.mktemp("pki"), (DEVICE_1, DEVICE_2), ()) as up:
        yield up


@pytest.fixture
def clients(broker: SecuredBroker) -> Iterator[Clients]:
    opened = Clients(broker)
    yield opened
    opened.close_all()


def test_device_reads_only_its_own_configuration(clients: Clients) -> None:
    """Subscribed to every device's config topic, HP-000031 receives its own
    configuration and not HP-000032's."""
    api = clients.account("api")
    handpiece = clients.device(DEVICE_1)
    handpiece.subscribe(config("+"))

    assert not api.publish(config(DEVICE_2), b"for-32").is_failure
    assert not api.publish(config(DEVICE_1), b"for-31").is_failure

    assert handpiece.wait_for(b"for-31") == [(config(DEVICE_1), b"for-31")]


def test_no_device_or_gateway_writes_a_configuration(clients: Clients) -> None:
    """A device may not publish on its own config topic, nor the gateway account on
    any: PUBACK 0x87, and the device never receives the forgery."""
    api = clients.account("api")
    gateway = clients.account("gateway")
    handpiece = clients.device(DEVICE_1)
    handpiece.subscribe(config(DEVICE_1))

    assert handpiece.publish(config(DEVICE_1), b"forged-by-device").value == NOT_AUTHORIZED
    assert gateway.publish(config(DEVICE_1), b"forged-by-gateway").value == NOT_AUTHORIZED
    assert not api.publish(config(DEVICE_1), b"sentinel").is_failure

    assert handpiece.wait_for(b"sentinel") == [(config(DEVICE_1), b"sentinel")]


def test_api_account_sends_tracked_commands(clients: Clients) -> None:
    """The configuration delivery (api account) publishes a tracked command on the
    device's cmd topic, and only the addressed device receives it."""
    api = clients.account("api")
    first = clients.device(DEVICE_1)
    second = clients.device(DEVICE_2)
    first.subscribe(cmd("+"))
    second.subscribe(cmd(DEVICE_2))
    command = b'{"cmd": "lock", "command_id": "0b6c2a4e-6d1f-4c3e-9a7e-2f1f0c9d8e11"}'

    assert not api.publish(cmd(DEVICE_1), command).is_failure
    assert not api.publish(cmd(DEVICE_2), b"sentinel").is_failure

    assert second.wait_for(b"sentinel") == [(cmd(DEVICE_2), b"sentinel")]
    assert first.wait_for(command) == [(cmd(DEVICE_1), command)]
