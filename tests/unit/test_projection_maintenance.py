"""Maintenance status thresholds, the service interval, and the needle-life forecast's
arithmetic and wording."""

import pickle
import pickletools
from collections import deque
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from schemas import GENESIS_HASH
from services.projections import (
    DeviceProjection,
    Fact,
    MaintenancePolicy,
    MaintenanceStatus,
    PunchRate,
    actuations_left,
    forecast_message,
    forecast_needle_life,
    life_used_pct,
)
from tests.support.streams import timestamp

DEVICE = "HP-000501"
SESSION = "6f1c2a4e-6d1f-4c3e-9a7e-2f1f0c9d8e11"
EPOCH = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)


def _chain(*steps: tuple[str, dict[str, Any]]) -> list[Fact]:
    """Facts linked one to the next; the hashes are stand-ins, the links are real."""
    facts: list[Fact] = []
    prev_hash = GENESIS_HASH
    for seq, (kind, data) in enumerate(steps, start=1):
        event_hash = f"{seq:064x}"
        at = EPOCH + timedelta(seconds=seq)
        facts.append(Fact(DEVICE, seq, kind, at, None, event_hash, prev_hash, data))
        prev_hash = event_hash
    return facts


def _install(rated: int = 1000) -> tuple[str, dict[str, Any]]:
    data = {
        "cartridge_id": "CT-1",
        "lot": "L1",
        "needles": 3,
        "needle_gauge": 22,
        "core_diameter_mm": 0.5,
        "rated_actuations": rated,
    }
    return "cartridge.installed", data


def _punch(actuations: int) -> tuple[str, dict[str, Any]]:
    data = {
        "session_id": SESSION,
        "cartridge_id": "CT-1",
        "actuations": actuations,
        "cores": actuations * 3,
        "depth_mm": 1.5,
        "window_start": timestamp(EPOCH),
        "window_end": timestamp(EPOCH + timedelta(seconds=2)),
    }
    return "cores.punched", data


def _wear(wear_pct: float) -> tuple[str, dict[str, Any]]:
    data = {"cartridge_id": "CT-1", "actuations_total": 0, "wear_pct": wear_pct}
    return "needle.wear", {**data, "insertion_force_n": None}


def _device(*steps: tuple[str, dict[str, Any]]) -> DeviceProjection:
    projection = DeviceProjection(DEVICE)
    projection.apply_all(_chain(*steps))
    return projection


@pytest.mark.parametrize(
    ("actuations", "wear_pct", "status"),
    [
        (799, None, MaintenanceStatus.OK),
        (800, None, MaintenanceStatus.CARTRIDGE_LOW),
        (949, None, MaintenanceStatus.CARTRIDGE_LOW),
        (950, None, MaintenanceStatus.CARTRIDGE_EXHAUSTED),
        (1001, None, MaintenanceStatus.CARTRIDGE_EXHAUSTED),
        (1, 79.9, MaintenanceStatus.OK),
        (1, 80.0, MaintenanceStatus.CARTRIDGE_LOW),
        (1, 94.9, MaintenanceStatus.CARTRIDGE_LOW),
        (1, 95.0, MaintenanceStatus.CARTRIDGE_EXHAUSTED),
    ],
)
def test_cartridge_status_turns_at_eighty_and_ninety_five_percent(
    actuations: int, wear_pct: float | None, status: MaintenanceStatus
) -> None:
    """Life used just under a threshold keeps the lower status; at it, the higher one,
    whether the count or the wear reading reaches it."""
    steps = [_install(rated=1000), _punch(actuations)]
    if wear_pct is not None:
        steps.append(_wear(wear_pct))
    assert _device(*steps).summary().status is status


def test_a_cartridge_over_its_rating_is_exhausted_even_under_a_lax_policy() -> None:
    """Past ``rated_actuations`` is exhausted whatever the clinic's thresholds."""
    lax = MaintenancePolicy(cartridge_low_pct=150.0, cartridge_exhausted_pct=200.0)
    projection = _device(_install(rated=100), _punch(101))
    assert projection.summary(policy=lax).status is MaintenanceStatus.CARTRIDGE_EXHAUSTED
    summary = _device(_install(rated=100), _punch(100)).summary(policy=lax)
    assert summary.status is MaintenanceStatus.OK
    assert summary.cartridge is not None
    assert not summary.cartridge.over_rating


def test_thresholds_hold_exactly_on_ratings_that_do_not_divide_evenly() -> None:
    """80 % of 1234 is 987.2 actuations: 987 is under it, 988 is not."""
    assert _device(_install(1234), _punch(987)).summary().status is MaintenanceStatus.OK
    low = _device(_install(1234), _punch(988)).summary().status
    assert low is MaintenanceStatus.CARTRIDGE_LOW


def test_service_is_due_at_ninety_percent_of_the_interval() -> None:
    """With the default 250,000 interval, 224,999 actuations are not due, 225,000 are;
    a service visit starts the count again from the visit's own figure."""
    assert not _device(_punch(224_999)).summary().attention
    projection = _device(_punch(225_000))
    assert projection.summary().attention == (MaintenanceStatus.SERVICE_DUE,)
    visit = EPOCH + timedelta(days=1)
    assert projection.record_service(visit, actuations_at_service=200_000)
    assert projection.actuations_since_service == 25_000
    assert projection.summary().status is MaintenanceStatus.OK
    assert not projection.record_service(visit - timedelta(days=2), actuations_at_service=0)
    assert projection.actuations_since_service == 25_000
    assert projection.record_service(visit + timedelta(days=1))
    assert projection.actuations_since_service == 0
    short = MaintenancePolicy(service_interval=1_000)
    assert _device(_punch(899)).summary(policy=short).status is MaintenanceStatus.OK
    due = _device(_punch(900)).summary(policy=short).status
    assert due is MaintenanceStatus.SERVICE_DUE


def test_attention_lists_everything_most_urgent_first() -> None:
    """Offline, fault, exhausted cartridge and service due at once, in that order; the
    headline status is the first, and presence unknown adds nothing."""
    fault = {"fault_code": "E-MOTOR-STALL", "severity": "critical", "message": "stalled"}
    projection = _device(_install(), _punch(240_000), ("fault.raised", fault))
    assert projection.summary(online=False).attention == (
        MaintenanceStatus.OFFLINE,
        MaintenanceStatus.FAULT,
        MaintenanceStatus.CARTRIDGE_EXHAUSTED,
        MaintenanceStatus.SERVICE_DUE,
    )
    assert projection.summary(online=False).status is MaintenanceStatus.OFFLINE
    assert projection.summary(online=None).status is MaintenanceStatus.FAULT
    assert projection.summary(online=True).status is MaintenanceStatus.FAULT


def test_life_used_is_the_worse_of_count_and_wear() -> None:
    """Life used % = max(actuations / rated, wear % / 100) × 100, exact on round figures."""
    assert life_used_pct(412, 1000, 37.1) == 41.2
    assert life_used_pct(412, 1000, 45.5) == 45.5
    assert life_used_pct(1200, 1000, None) == 120.0


def test_actuations_left_use_the_worse_of_count_and_wear() -> None:
    """Left = rated - used, with wear counted as used, never below zero."""
    assert actuations_left(412, 1000, 37.1) == 588
    assert actuations_left(100, 1000, 60.0) == 400
    assert actuations_left(100, 1000, 37.1) == 629
    assert actuations_left(1200, 1000, None) == 0


def test_the_pace_follows_the_last_ten_minutes_of_punching() -> None:
    """Ten minutes at 60 a minute, then ten at 120: the pace is 120, measured over the
    latest windows that make up ten minutes of punching."""
    rate = PunchRate()
    assert rate.per_minute() is None
    start = EPOCH
    for per_window in [60] * 10 + [120] * 10:
        end = start + timedelta(seconds=60)
        rate.add(timestamp(start), timestamp(end), per_window)
        start = end + timedelta(minutes=5)
    assert rate.per_minute() == pytest.approx(120.0)
    assert rate.seconds == pytest.approx(600.0)


def _punched(rate: PunchRate, windows: int, start: datetime = EPOCH) -> datetime:
    for index in range(windows):
        end = start + timedelta(seconds=1 + index % 3)
        rate.add(timestamp(start), timestamp(end), 10 + index % 7)
        start = end + timedelta(seconds=1)
    return start


def test_a_saved_pace_resumes_exactly_and_pickles_flat() -> None:
    """A device snapshot carries the pace: restored, it goes on exactly as the original
    would, and its hundreds of windows pickle as flat arrays, not one object each
    (the live projector pickles every touched device's snapshot every batch)."""
    rate = PunchRate()
    start = _punched(rate, 1200)
    saved = pickle.dumps(rate, protocol=pickle.HIGHEST_PROTOCOL)
    assert sum(1 for _ in pickletools.genops(saved)) < 100  # 4 or more a window as tuples
    restored = pickle.loads(saved)  # noqa: S301 - made just above
    assert (restored.seconds, restored.actuations) == (rate.seconds, rate.actuations)
    for pace in (rate, restored):
        _punched(pace, 500, start)
    assert restored.per_minute() == rate.per_minute()
    assert (restored.seconds, restored.actuations) == (rate.seconds, rate.actuations)


def test_a_pace_saved_before_the_flat_form_still_loads() -> None:
    """Snapshots of the same format written before hold the windows as a deque of
    (seconds, actuations); loaded, the pace goes on as one that never left memory."""
    rate = PunchRate()
    start = _punched(rate, 400)
    old = PunchRate.__new__(PunchRate)
    old.__setstate__((None, {
        "horizon_s": rate.horizon_s, "seconds": rate.seconds, "actuations": rate.actuations,
        "windows": deque(rate.counted()),
    }))  # fmt: skip
    for pace in (rate, old):
        _punched(pace, 300, start)
    assert old.per_minute() == rate.per_minute()
    assert list(old.counted()) == list(rate.counted())
    assert old == rate


def test_forecast_arithmetic() -> None:
    """Minutes left are actuations left over the pace; no pace, no minutes."""
    forecast = forecast_needle_life(900, 150.0)
    assert forecast.minutes_left == pytest.approx(6.0)
    assert forecast_needle_life(900, None).minutes_left is None
    assert forecast_needle_life(900, 0.0).minutes_left is None


@pytest.mark.parametrize(
    ("left", "per_minute", "message"),
    [
        (900, 150.0, "about 6 minutes of punching left at the current rate"),
        (975, 150.0, "about 7 minutes of punching left at the current rate"),
        (150, 150.0, "about 1 minute of punching left at the current rate"),
        (50, 150.0, "less than a minute of punching left at the current rate"),
        (90_000, 150.0, "about 10 hours of punching left at the current rate"),
        (0, 150.0, "needle life used up: replace the cartridge"),
        (1, None, "1 actuation left; no recent punching to time"),
        (300, None, "300 actuations left; no recent punching to time"),
    ],
)
def test_forecast_messages(left: int, per_minute: float | None, message: str) -> None:
    """The forecast reads as clinic staff would say it."""
    assert forecast_message(forecast_needle_life(left, per_minute)) == message
