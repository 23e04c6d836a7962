"""Desired configuration and tracked commands end to end, on real Mosquitto and
PostgreSQL: the gateway (``coreline gateway``), the configuration delivery loop, and
agents in a child process (``tests.support.config_fleet``) with their configuration
and command handling.

The convergence test prints its times (``-s`` shows them); docs/device-configuration.md
quotes a run."""

import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
from sqlalchemy import Engine

from schemas.config_events import ConfigLayer, LayerSettings
from schemas.device_config import CommandMessage
from schemas.streams import command_stream
from services.api.commands import assign_device, register_device
from services.api.config_changes import change_layer, issue_command
from services.config_delivery import CommandState, ConfigState, run_config_delivery
from services.config_delivery.database import open_engine
from services.config_delivery.views import convergence, device_config_view, find_command
from services.eventstore import EventStore, open_event_store
from tests.support.fleet_process import device_ids
from tests.support.mosquitto import TemporaryMosquitto
from tests.support.platform_processes import GatewayProcess, python_module
from tests.support.publisher import Publisher
from transport import BrokerAddress

pytestmark = pytest.mark.slow

OPERATOR = "ops <ops@example> (manufacturer user u-1)"
FLEET_SIZE = 500
OFFLINE = 50


@dataclass
class Platform:
    url: str
    broker: TemporaryMosquitto
    store: EventStore
    engine: Engine
    logs: Path

    def register(self, ids: list[str], clinics: tuple[str, ...] = ("clinic-1", "clinic-2")) -> None:
        for number, device_id in enumerate(ids):
            register_device(self.store, device_id, "CL-200", OPERATOR)
            assign_device(self.store, device_id, clinics[number % len(clinics)], OPERATOR)

    def agents(self, first: int, count: int, name: str) -> "Agents":
        return Agents(self, first, count, name)

    def wait(self, condition: Callable[[], bool], what: str, timeout: float = 120.0) -> float:
        """Seconds until ``condition`` holds (fails naming ``what`` after ``timeout``)."""
        started = time.monotonic()
        while not condition():
            assert time.monotonic() - started < timeout, f"{what}: not within {timeout} s"
            time.sleep(0.2)
        return time.monotonic() - started


class Agents:
    """``tests.support.config_fleet`` devices ``first``.. in a child process."""

    def __init__(self, platform: Platform, first: int, count: int, name: str) -> None:
        self.ids = device_ids(count, first)
        self.process = python_module(
            "tests.support.config_fleet", str(platform.logs / f"{name}.db"), platform.broker.url,
            "--devices", str(count), "--first", str(first), log=platform.logs / f"{name}.log",
        )  # fmt: skip

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=30)


@pytest.fixture
def platform(postgres_url: str, tmp_path: Path) -> Iterator[Platform]:
    """Mosquitto, the gateway and the configuration delivery loop on a fresh database."""
    with TemporaryMosquitto() as broker:
        gateway = GatewayProcess(postgres_url, broker, tmp_path / "gateway.log")
        stop = threading.Event()
        delivery = threading.Thread(
            target=run_config_delivery,
            args=(postgres_url, BrokerAddress.parse(broker.url), stop),
            name="config-delivery",
        )
        delivery.start()
        store = open_event_store(postgres_url)
        engine = open_engine(postgres_url)
        try:
            yield Platform(postgres_url, broker, store, engine, tmp_path)
        finally:
            stop.set()
            delivery.join(timeout=30)
            gateway.stop()
            store.close()
            engine.dispose()


def test_configuration_converges_across_500_devices_with_some_offline(platform: Platform) -> None:
    """500 registered devices, 50 of them offline: a fleet-layer change reaches every
    online device (each reports ``config.applied`` at the new version), the offline
    ones show pending, and once back they converge from the retained message."""
    ids = device_ids(FLEET_SIZE)
    platform.register(ids)
    online = platform.agents(1, FLEET_SIZE - OFFLINE, "online")
    try:

        def counts() -> tuple[int, int, int]:
            with platform.engine.connect() as connection:
                found = convergence(connection)
            return found.applied, found.pending, found.refused

        first_seen = platform.wait(
            lambda: counts() == (FLEET_SIZE - OFFLINE, OFFLINE, 0), "version 1 online", 180
        )
        wanted = LayerSettings(heartbeat_interval_s=60, recalled_lots=("LOT-RECALL-1",))
        assert change_layer(platform.store, ConfigLayer.FLEET, None, wanted, OPERATOR)
        online_converged = platform.wait(
            lambda: (
                counts() == (FLEET_SIZE - OFFLINE, OFFLINE, 0)
                and _version_of(platform, ids[0]) == (2, 2)
            ),
            "version 2 online",
        )
        returning = platform.agents(FLEET_SIZE - OFFLINE + 1, OFFLINE, "returning")
        try:
            back_converged = platform.wait(lambda: counts() == (FLEET_SIZE, 0, 0), "all back")
        finally:
            returning.stop()
    finally:
        online.stop()
    for device_id in (ids[0], ids[-1]):
        assert _version_of(platform, device_id) == (2, 2)
    print(
        f"\nconvergence over {FLEET_SIZE} devices: first configuration on "
        f"{FLEET_SIZE - OFFLINE} online devices {first_seen:.1f} s after their start; "
        f"a fleet-layer change applied by all online devices in {online_converged:.1f} s; "
        f"{OFFLINE} devices back online converged in {back_converged:.1f} s"
    )


def test_commands_wait_for_an_offline_device_or_expire(platform: Platform) -> None:
    """A command sent while the device is offline is delivered when it is back and
    acknowledged; one whose expiry passes meanwhile is recorded ``command.expired``
    (the broker drops it too), and the device rejects it as expired if it arrives late."""
    (device_id,) = ids = device_ids(1, 901)
    platform.register(ids)
    agents = platform.agents(901, 1, "commands")
    platform.wait(lambda: _state(platform, device_id) is ConfigState.APPLIED, "first config")
    agents.stop()

    waiting = issue_command(platform.store, device_id, "lock", {"reason": "inspection"}, 300,
                            OPERATOR)  # fmt: skip
    expiring = issue_command(platform.store, device_id, "collect_diagnostics", {}, 10, OPERATOR)
    platform.wait(
        lambda: _command(platform, device_id, expiring.command_id) is CommandState.EXPIRED,
        "the sweeper's expiry", 60,
    )  # fmt: skip
    back = platform.agents(901, 1, "commands")
    try:
        platform.wait(
            lambda: _command(platform, device_id, waiting.command_id) is CommandState.ACKNOWLEDGED,
            "the waiting command acknowledged",
        )
        stream = [event.type for event in platform.store.read_stream(command_stream(device_id))]
        assert stream == ["command.issued", "command.issued", "command.expired"]
        device_types = [event.type for event in platform.store.read_stream(device_id)]
        assert "interlock.engaged" in device_types
        assert _command(platform, device_id, expiring.command_id) is CommandState.EXPIRED

        late = CommandMessage.model_validate(
            {"cmd": "collect_diagnostics", "command_id": expiring.command_id,
             "expires_at": expiring.expires_at, "issued_by": OPERATOR}
        )  # fmt: skip
        with Publisher(platform.broker.port) as publisher:
            publisher.publish(f"coreline/v1/devices/{device_id}/cmd",
                              late.model_dump_json().encode())  # fmt: skip
        platform.wait(
            lambda: _command(platform, device_id, expiring.command_id) is CommandState.REJECTED,
            "the late command rejected",
        )
    finally:
        back.stop()
    with platform.engine.connect() as connection:
        rejected = find_command(connection, device_id, expiring.command_id)
    assert rejected is not None
    assert (rejected.reason, rejected.expired_at is not None) == ("expired", True)


def test_a_refused_configuration_is_recorded_with_its_reason(platform: Platform) -> None:
    """A device layer whose merged settings contradict themselves reaches the device,
    which refuses it and keeps what it had; the platform shows it refused, why."""
    (device_id,) = ids = device_ids(1, 951)
    platform.register(ids)
    agents = platform.agents(951, 1, "refusing")
    try:
        platform.wait(lambda: _state(platform, device_id) is ConfigState.APPLIED, "first config")
        incoherent = LayerSettings(needle_life_warning_pct=99)
        change_layer(platform.store, ConfigLayer.DEVICE, device_id, incoherent, OPERATOR)
        platform.wait(lambda: _state(platform, device_id) is ConfigState.REFUSED, "refusal")
    finally:
        agents.stop()
    with platform.engine.connect() as connection:
        view = device_config_view(connection, device_id)
    assert view is not None
    assert (view.desired_version, view.reported_version, view.refused_version) == (2, 1, 2)
    assert view.refused_reason == "needle_life_warning_pct 99 is above needle_life_critical_pct 95"
    refused = [
        orjson.loads(event.body)["data"]
        for event in platform.store.read_stream(device_id)
        if event.type == "config.refused"
    ]
    assert [entry["version"] for entry in refused] == [2]


def _state(platform: Platform, device_id: str) -> ConfigState | None:
    with platform.engine.connect() as connection:
        view = device_config_view(connection, device_id)
    return None if view is None else view.state


def _version_of(platform: Platform, device_id: str) -> tuple[int, int] | None:
    with platform.engine.connect() as connection:
        view = device_config_view(connection, device_id)
    return None if view is None else (view.desired_version, view.reported_version)


def _command(platform: Platform, device_id: str, command_id: str) -> CommandState | None:
    with platform.engine.connect() as connection:
        found = find_command(connection, device_id, command_id)
    return None if found is None else found.state
