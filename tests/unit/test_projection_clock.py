"""Device clocks that are wrong: an implausible device time (before 2020, or more than
a day after the platform received the event) is stored as reported, counted as clock
skew, and every time the read models take from it is the platform's receive time."""

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from schemas import GENESIS_HASH, utc_text
from services.alerts.engine import AlertEngine
from services.alerts.policy import AlertPolicy
from services.projections import (
    CLOCK_FLOOR,
    CLOCK_SKEW_TOLERANCE,
    DeviceProjection,
    Fact,
    cartridge_install,
    clock_skewed,
    event_time,
)

DEVICE = "HP-000616"
SESSION = "6f1c2a4e-6d1f-4c3e-9a7e-2f1f0c9d8e11"
RECEIVED = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
YEAR_9999 = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
BOOT = {"firmware_version": "2.4.1", "agent_version": "1.0.0", "boot_id": "b"}
FAULT = {"fault_code": "E-MOTOR-STALL", "severity": "critical", "message": "motor stalled"}
INSTALL = {
    "cartridge_id": "CT-1", "lot": "L1", "needles": 3, "needle_gauge": 22,
    "core_diameter_mm": 0.5, "rated_actuations": 1000,
}  # fmt: skip
START = {
    "session_id": SESSION, "treatment_area": "neck", "area_cm2": 400.0,
    "operator_ref": "op-1", "cartridge_id": "CT-1",
}  # fmt: skip
END = {
    "session_id": SESSION, "actuations_total": 0, "cores_total": 0, "duration_s": 60,
    "reason": "completed",
}  # fmt: skip


class Device:
    """A device fold and the alert engine, fed events with both clocks given."""

    def __init__(self) -> None:
        self.projection = DeviceProjection(DEVICE)
        self.engine = AlertEngine({}, lambda _clinic: AlertPolicy())
        self.facts: list[Fact] = []

    def feed(
        self, kind: str, data: dict[str, Any], occurred: datetime, received: datetime | None
    ) -> Fact:
        seq = len(self.facts) + 1
        previous = self.facts[-1].hash if self.facts else GENESIS_HASH
        fact = Fact(DEVICE, seq, kind, occurred, received, f"{seq:064x}", previous, data)
        self.facts.append(fact)
        changes = self.projection.apply(fact)
        self.engine.after_fold(self.projection, fact, changes, "clinic-1")
        return fact


def test_a_year_9999_event_leaves_last_seen_at_its_receive_time_and_counts_as_skew() -> None:
    """An event stamped 9999-12-31 is counted as skewed, and last seen is its receive
    time, not the year 9999; the device's latest plausible time stays."""
    device = Device()
    device.feed("agent.started", BOOT, RECEIVED - timedelta(seconds=5), RECEIVED)
    later = RECEIVED + timedelta(minutes=1)
    device.feed("fault.raised", FAULT, YEAR_9999, later)
    summary = device.projection.summary()
    assert summary.last_seen == later
    assert summary.last_occurred_at == RECEIVED - timedelta(seconds=5)
    assert (summary.clock_skew_events, summary.last_clock_skew_seq) == (1, 2)
    assert device.facts[-1].occurred_at == YEAR_9999  # the fact itself is as reported


def test_a_fault_raised_at_a_skewed_time_is_raised_at_its_receive_time() -> None:
    """A fault stamped 9999-12-31 is open since its receive time, and its alert's raised
    time is that receive time."""
    device = Device()
    device.feed("agent.started", BOOT, RECEIVED - timedelta(seconds=5), RECEIVED)
    later = RECEIVED + timedelta(minutes=1)
    device.feed("fault.raised", FAULT, YEAR_9999, later)
    (fault,) = device.projection.summary().open_faults
    assert fault.raised_at == later
    (alert,) = device.engine.decisions.raised
    body = orjson.loads(alert.body)
    assert body["data"]["rule"] == "device_fault"
    assert body["occurred_at"] == utc_text(later)


@pytest.mark.parametrize(
    ("occurred", "skewed"),
    [
        (RECEIVED - timedelta(days=2), False),  # held in the outbox while offline
        (RECEIVED + timedelta(hours=23, minutes=59), False),  # a clock a little ahead
        (RECEIVED + CLOCK_SKEW_TOLERANCE, False),
        (RECEIVED + CLOCK_SKEW_TOLERANCE + timedelta(seconds=1), True),
        (CLOCK_FLOOR, False),
        (CLOCK_FLOOR - timedelta(seconds=1), True),  # an RTC that was never set
        (datetime(1970, 1, 1, tzinfo=UTC), True),
        (YEAR_9999, True),
    ],
)
def test_device_times_are_skewed_only_outside_the_plausible_window(
    occurred: datetime, skewed: bool
) -> None:
    """Two days in the past or within the tolerance ahead is a plausible device time;
    before 2020 or beyond the tolerance is skew, counted once per event."""
    device = Device()
    fact = device.feed("agent.started", BOOT, occurred, RECEIVED)
    device.projection.apply(fact)  # a redelivery counts nothing more
    assert clock_skewed(fact) is skewed
    assert event_time(fact) == (RECEIVED if skewed else occurred)
    summary = device.projection.summary()
    assert summary.clock_skew_events == int(skewed)
    assert summary.last_occurred_at == (None if skewed else occurred)


def test_without_a_receive_time_only_the_floor_is_judged() -> None:
    """A fact that never went through a store keeps its device time: there is no
    receive time to judge it by or stand in for it."""
    device = Device()
    fact = device.feed("agent.started", BOOT, YEAR_9999, None)
    assert not clock_skewed(fact)
    assert device.projection.summary().last_seen == YEAR_9999
    early = Fact(DEVICE, 2, "agent.started", datetime(2001, 1, 1, tzinfo=UTC), None,
                 "2" * 64, fact.hash, BOOT)  # fmt: skip
    assert clock_skewed(early)
    assert event_time(early) == early.occurred_at


def test_skewed_session_and_cartridge_times_fall_back_and_plausible_ones_stay() -> None:
    """A session started and a cartridge installed at skewed times take their receive
    times; the session's plausible end keeps the device's own time."""
    device = Device()
    device.feed("agent.started", BOOT, RECEIVED, RECEIVED)
    installed = device.feed(
        "cartridge.installed", INSTALL, YEAR_9999, RECEIVED + timedelta(seconds=1)
    )
    device.feed("session.started", START, YEAR_9999, RECEIVED + timedelta(seconds=2))
    ended_at = RECEIVED + timedelta(hours=1)
    device.feed("session.ended", END, ended_at, ended_at + timedelta(seconds=3))
    audit = device.projection.session_audit(SESSION)
    assert audit is not None
    assert (audit.started_at, audit.ended_at) == (RECEIVED + timedelta(seconds=2), ended_at)
    cartridge = device.projection.summary().cartridge
    assert cartridge is not None
    assert cartridge.installed_at == RECEIVED + timedelta(seconds=1)
    install = cartridge_install(installed)
    assert install is not None
    assert install.installed_at == RECEIVED + timedelta(seconds=1)
    assert device.projection.summary().clock_skew_events == 2


def test_a_skewed_fact_waiting_behind_a_gap_never_moves_last_seen_device_time() -> None:
    """A skewed fact that arrives before the gap in front of it fills is not taken as
    the device's latest time either."""
    device = Device()
    arrived = RECEIVED + timedelta(seconds=9)
    first = Fact(DEVICE, 1, "agent.started", RECEIVED, RECEIVED, "1" * 64, GENESIS_HASH, BOOT)
    skewed = Fact(DEVICE, 2, "fault.raised", YEAR_9999, arrived, "2" * 64, first.hash, FAULT)
    assert device.projection.apply(skewed) == []
    assert device.projection.last_occurred_at is None
    device.projection.apply(first)
    summary = device.projection.summary()
    assert (summary.last_occurred_at, summary.last_seen) == (RECEIVED, arrived)
    assert summary.clock_skew_events == 1
    assert summary.open_faults[0].raised_at == arrived
