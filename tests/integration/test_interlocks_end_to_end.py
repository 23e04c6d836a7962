"""Safety interlocks end to end, on real Mosquitto and PostgreSQL: the gateway
(``coreline gateway``), the configuration delivery loop, and simulated handpieces
(sealed, each with its agent link, its configuration and command handling, and the
interlocks every reading passes).

Configuration layers set the policy (a recalled lot in the fleet layer, a clinic on
``block``); the handpieces enforce it; the refusals are in each device's sealed
stream, verified by ``coreline verify``, served by the API's event history, and
folded into the device read model and the fleet overview."""

import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import orjson
import pytest
from fastapi.testclient import TestClient

from edge_agent.device import DeviceReading
from edge_agent.outbox import Durability, Outbox
from schemas.config_events import ConfigLayer, LayerSettings
from schemas.device_config import InterlockMode
from services.api import Role, create_token
from services.api.commands import assign_device, record_service, register_device, register_key
from services.api.config_changes import change_layer, issue_command
from services.config_delivery import run_config_delivery
from services.eventstore import EventStore, StoredEvent, open_event_store
from services.projections.read_store import ReadModelStore
from services.projector import Projector
from simulation import (
    FleetPlan,
    FleetSimulation,
    HandpieceSimulator,
    SimulatorProfile,
    simulated_key,
)
from tests.support.api_client import api_client, bearer
from tests.support.mosquitto import TemporaryMosquitto
from tests.support.platform_processes import GatewayProcess
from transport import BrokerAddress

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

OPERATOR: Final = "fleet-ops <ops@example> (manufacturer user u-1)"
SEED: Final = 16
START: Final = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
BUSY: Final = SimulatorProfile(mean_idle_gap_s=600, min_idle_gap_s=60)
OVERUSING: Final = SimulatorProfile(
    mean_idle_gap_s=600, min_idle_gap_s=60, cartridge_overuse_probability=1.0
)


@dataclass
class Platform:
    url: str
    broker: TemporaryMosquitto
    store: EventStore
    tmp: Path

    def enrol(self, device_id: str, clinic: str) -> None:
        register_device(self.store, device_id, "CX-2", OPERATOR)
        assign_device(self.store, device_id, clinic, OPERATOR)
        register_key(self.store, device_id, simulated_key(SEED, device_id).public_text, OPERATOR)

    def stream(self, device_id: str) -> list[StoredEvent]:
        return self.store.read_stream(device_id)

    def wait(self, condition: Callable[[], bool], what: str, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
            time.sleep(0.25)


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
        try:
            yield Platform(postgres_url, broker, store, tmp_path)
        finally:
            stop.set()
            delivery.join(timeout=30)
            gateway.stop()
            store.close()


class RunningFleet:
    """Simulated handpieces publishing through their own agent links, in a thread."""

    def __init__(
        self, platform: Platform, devices: list[str], speed: float, profile: SimulatorProfile
    ) -> None:
        self.outbox = Outbox(platform.tmp / "fleet.db", durability=Durability.NORMAL)
        plan = FleetPlan(devices, seed=SEED, speed=speed, profile=profile, start=START)
        self.fleet = FleetSimulation(plan, self.outbox, BrokerAddress.parse(platform.broker.url))
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.fleet.run, args=(self.stop,), name="fleet")

    def __enter__(self) -> "RunningFleet":
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join(timeout=30)
        self.outbox.close()


def _data(event: StoredEvent) -> dict[str, Any]:
    data: dict[str, Any] = orjson.loads(event.body)["data"]
    return data


def _engaged(events: list[StoredEvent], interlock: str) -> list[dict[str, Any]]:
    return [
        _data(event)
        for event in events
        if event.type == "interlock.engaged" and _data(event)["interlock"] == interlock
    ]


def _project(url: str) -> None:
    store, read_models = open_event_store(url), ReadModelStore(url)
    try:
        projector = Projector(store, read_models)
        while projector.step():
            pass
    finally:
        store.close()
        read_models.close()


def _manufacturer(url: str) -> TestClient:
    read_models = ReadModelStore(url)
    try:
        _, token = create_token(read_models.engine, Role.MANUFACTURER, None, "interlock test")
    finally:
        read_models.close()
    client = api_client(url)
    client.headers.update(bearer(token))
    return client


def _second_install(device_id: str) -> tuple[str, str, datetime]:
    """The cartridge id, lot and time of the device's second install, unconfigured
    (a lot its first cartridge is not of), from the same seeded story."""
    simulator = HandpieceSimulator(device_id, SEED, START, BUSY)
    installs = [
        item for item in simulator.advance(START + timedelta(days=2))
        if isinstance(item, DeviceReading) and item.type == "cartridge.installed"
    ]  # fmt: skip
    first_lot = installs[0].data["lot"]
    second = next(item for item in installs[1:] if item.data["lot"] != first_lot)
    return second.data["cartridge_id"], second.data["lot"], second.occurred_at


def test_a_recalled_lot_is_refused_at_install_and_the_refusal_is_audited(
    platform: Platform,
) -> None:
    """The fleet layer recalls the lot a handpiece would install next: the handpiece
    applies the configuration, refuses that cartridge (``interlock.engaged``
    {recalled_lot, block}, no ``cartridge.installed``), installs another and goes on;
    the sealed stream verifies with ``coreline verify --all``, the API's event history
    serves the refusal verbatim, and the device page and fleet overview count it."""
    device_id = "HP-001601"
    platform.enrol(device_id, "clinic-1")
    refused_id, recalled, due = _second_install(device_id)
    assert change_layer(platform.store, ConfigLayer.FLEET, None,
                        LayerSettings(recalled_lots=(recalled,)), OPERATOR)  # fmt: skip
    # Fast enough to reach the second install within seconds, slow enough that the
    # configuration (delivered when the device connects) is applied well before it.
    speed = max(60.0, (due - START).total_seconds() / 12)
    with RunningFleet(platform, [device_id], speed, BUSY):
        platform.wait(
            lambda: any(e.type == "session.started" and e.seq > _refusal_seq(platform, device_id)
                        for e in platform.stream(device_id)),
            "the refusal, and a session after it",
        )  # fmt: skip
    events = platform.stream(device_id)
    types = [event.type for event in events]
    assert types.index("config.applied") < _refusal_seq(platform, device_id) - 1
    (refusal,) = _engaged(events, "recalled_lot")
    assert refusal == {
        "interlock": "recalled_lot", "mode": "block", "cartridge_id": refused_id,
        "lot": recalled, "reason": f"cartridge {refused_id}: lot {recalled} is recalled",
    }  # fmt: skip
    installed = [_data(event) for event in events if event.type == "cartridge.installed"]
    assert refused_id not in {data["cartridge_id"] for data in installed}
    assert recalled not in {data["lot"] for data in installed}

    verified = subprocess.run(
        [sys.executable, "-m", "services", "verify", "--all", "--database-url", platform.url],
        capture_output=True, text=True, timeout=120, check=False,
        env={key: value for key, value in os.environ.items() if not key.startswith("CORELINE_")},
    )  # fmt: skip
    assert verified.returncode == 0, verified.stdout + verified.stderr

    _project(platform.url)
    with _manufacturer(platform.url) as client:
        history = client.get(f"/api/v1/devices/{device_id}/events", params={"limit": 500})
        assert history.status_code == 200
        served = [item for item in history.json()["items"] if item["type"] == "interlock.engaged"]
        assert [item["data"] for item in served] == [refusal]
        assert served[0]["event"]["hash"] == served[0]["hash"]
        detail = client.get(f"/api/v1/devices/{device_id}").json()
        assert detail["interlocks"]["last_refused_install"]["cartridge_id"] == refused_id
        assert detail["interlocks"]["refusals"] == 1
        assert detail["interlocks"]["active"] == []
        assert client.get("/api/v1/fleet").json()["interlock_refusals"] == 1


def _refusal_seq(platform: Platform, device_id: str) -> int:
    for event in platform.stream(device_id):
        if event.type == "interlock.engaged" and _data(event)["interlock"] == "recalled_lot":
            return event.seq
    return 10**9


def _punched_per_cartridge(events: list[StoredEvent]) -> tuple[Counter[str], dict[str, int]]:
    used: Counter[str] = Counter()
    rated: dict[str, int] = {}
    for event in events:
        data = _data(event)
        if event.type == "cartridge.installed":
            rated[data["cartridge_id"]] = data["rated_actuations"]
        elif event.type == "cores.punched":
            used[data["cartridge_id"]] += data["actuations"]
    return used, rated


def test_a_spent_cartridge_is_blocked_under_block_and_only_warned_under_warn(
    platform: Platform,
) -> None:
    """Two handpieces whose clinics keep every cartridge past its rating: at the clinic
    on ``block`` each cartridge stops at its rating (recorded ``block``, swapped); at the
    clinic on ``warn`` (the default) they punch on past it, each recorded once."""
    blocked, warned = "HP-001611", "HP-001612"
    platform.enrol(blocked, "clinic-block")
    platform.enrol(warned, "clinic-warn")
    blocking = LayerSettings(cartridge_life_mode=InterlockMode.BLOCK)
    assert change_layer(platform.store, ConfigLayer.CLINIC, "clinic-block", blocking, OPERATOR)

    def both_engaged() -> bool:
        return bool(
            _engaged(platform.stream(blocked), "cartridge_life")
            and _engaged(platform.stream(warned), "cartridge_life")
        )

    with RunningFleet(platform, [blocked, warned], 1800.0, OVERUSING):
        platform.wait(both_engaged, "a cartridge at its rating on both handpieces", 180)
    block_events, warn_events = platform.stream(blocked), platform.stream(warned)
    used, rated = _punched_per_cartridge(block_events)
    assert all(used[cartridge] <= rated[cartridge] for cartridge in used), (used, rated)
    assert {data["mode"] for data in _engaged(block_events, "cartridge_life")} == {"block"}
    assert [event.type for event in block_events].count("config.applied") >= 1

    used, rated = _punched_per_cartridge(warn_events)
    warnings = _engaged(warn_events, "cartridge_life")
    assert {data["mode"] for data in warnings} == {"warn"}
    warned_cartridges = [data["cartridge_id"] for data in warnings]
    assert len(warned_cartridges) == len(set(warned_cartridges)), "a warning recorded twice"
    for cartridge in warned_cartridges:
        assert used[cartridge] >= rated[cartridge]
    past = {cartridge for cartridge in used if used[cartridge] > rated[cartridge]}
    assert past, "no cartridge went past its rating"
    assert past <= set(warned_cartridges)


def test_lock_unlock_and_override_by_command(platform: Platform) -> None:
    """``lock`` reaches the handpiece as a tracked command: acknowledged, the lock
    recorded, and nothing punched or started until ``unlock``; a second lock is
    released by a manufacturer's ``override_interlock`` (recorded as ``override``); an
    override of nothing engaged is rejected ``not_applicable``."""
    device_id = "HP-001621"
    platform.enrol(device_id, "clinic-1")
    with RunningFleet(platform, [device_id], 900.0, BUSY):
        platform.wait(lambda: _count(platform, device_id, "cores.punched") > 0, "punching")
        issue_command(platform.store, device_id, "lock", {"reason": "field notice 7"}, 300,
                      OPERATOR)  # fmt: skip
        platform.wait(lambda: bool(_engaged(platform.stream(device_id), "locked")), "the lock")
        time.sleep(4)  # an hour of simulated clinic time, locked
        issue_command(platform.store, device_id, "unlock", {}, 300, OPERATOR)
        platform.wait(lambda: _released(platform, device_id) == ["unlocked"], "the unlock")
        unlocked_at = len(platform.stream(device_id))
        platform.wait(
            lambda: "cores.punched" in [e.type for e in platform.stream(device_id)[unlocked_at:]],
            "punching again",
        )
        issue_command(platform.store, device_id, "lock", {}, 300, OPERATOR)
        platform.wait(lambda: len(_engaged(platform.stream(device_id), "locked")) == 2, "relock")
        issue_command(platform.store, device_id, "override_interlock", {"interlock": "locked"},
                      300, OPERATOR)  # fmt: skip
        platform.wait(lambda: _released(platform, device_id) == ["unlocked", "override"],
                      "the override")  # fmt: skip
        issue_command(platform.store, device_id, "override_interlock",
                      {"interlock": "recalled_lot"}, 300, OPERATOR)  # fmt: skip
        platform.wait(lambda: _count(platform, device_id, "command.rejected") == 1, "rejected")
    events = platform.stream(device_id)
    locked = False
    for event in events:
        if event.type == "interlock.engaged" and _data(event)["interlock"] == "locked":
            locked = True
        elif event.type == "interlock.released" and _data(event)["interlock"] == "locked":
            locked = False
        elif event.type in {"cores.punched", "session.started"}:
            assert not locked, f"{event.type} at seq {event.seq} while locked"
    first_lock = _engaged(events, "locked")[0]
    assert first_lock["reason"] == "locked by command: field notice 7"
    acknowledged = [_data(e)["cmd"] for e in events if e.type == "command.acknowledged"]
    assert acknowledged == ["lock", "unlock", "lock", "override_interlock"]
    (rejected,) = [_data(e) for e in events if e.type == "command.rejected"]
    assert (rejected["cmd"], rejected["reason"]) == ("override_interlock", "not_applicable")


def _count(platform: Platform, device_id: str, kind: str) -> int:
    return sum(event.type == kind for event in platform.stream(device_id))


def _released(platform: Platform, device_id: str) -> list[str]:
    return [
        _data(event)["by"]
        for event in platform.stream(device_id)
        if event.type == "interlock.released" and _data(event)["interlock"] == "locked"
    ]


def test_service_overdue_locks_the_handpiece_until_a_service_is_recorded(
    platform: Platform,
) -> None:
    """With a short service interval under ``block``, the handpiece locks itself when
    its actuator passes the service point and starts no session; the manufacturer
    records a service visit with the actuator's count, the delivery loop moves the
    device's service point, and the handpiece releases the lock as ``serviced`` and
    treats again."""
    device_id = "HP-001631"
    platform.enrol(device_id, "clinic-1")
    plan = LayerSettings(service_interval_actuations=500, service_overdue_mode=InterlockMode.BLOCK)
    assert change_layer(platform.store, ConfigLayer.FLEET, None, plan, OPERATOR)
    with RunningFleet(platform, [device_id], 900.0, BUSY):
        platform.wait(
            lambda: bool(_engaged(platform.stream(device_id), "service_overdue")), "overdue"
        )
        locked_at = _service_seq(platform, device_id)
        # The session under way finishes; the next may not start.
        platform.wait(
            lambda: any(e.type == "session.ended" and e.seq > locked_at
                        for e in platform.stream(device_id)),
            "the session under way ended",
        )  # fmt: skip
        time.sleep(3)  # most of an hour of clinic time, locked
        events = platform.stream(device_id)
        assert not [e for e in events if e.type == "session.started" and e.seq > locked_at]
        counted = sum(_data(e)["actuations"] for e in events if e.type == "cores.punched")
        record_service(platform.store, device_id, "actuator serviced", counted, OPERATOR)
        platform.wait(
            lambda: "serviced" in [_data(e)["by"] for e in platform.stream(device_id)
                                   if e.type == "interlock.released"],
            "the release",
        )  # fmt: skip
        released_at = len(platform.stream(device_id))
        platform.wait(
            lambda: "session.started" in [e.type for e in platform.stream(device_id)[released_at:]],
            "a session after the service",
        )
    engaged = _engaged(platform.stream(device_id), "service_overdue")
    assert {data["mode"] for data in engaged} == {"block"}
    assert engaged[0]["reason"].startswith("service was due at 500 actuations")


def _service_seq(platform: Platform, device_id: str) -> int:
    return next(
        event.seq
        for event in platform.stream(device_id)
        if event.type == "interlock.engaged" and _data(event)["interlock"] == "service_overdue"
    )
