"""The platform's fold of a handpiece's ``interlock.*`` events: what is engaged now
(with reason and since), locked or not, refusals and warnings counted, a refused
install never an active interlock; and, over random sequences, the fold agrees with
the handpiece's own state."""

import uuid
from datetime import timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.device import DeviceReading
from edge_agent.interlocks import Interlocks
from schemas import GENESIS_HASH, seal, utc_text
from schemas.device_config import DeviceSettings, InterlockMode
from services.projections import DeviceProjection, fact_from_body
from tests.unit.test_interlocks import AT, _install, _punch, _remove, _run, _settings, _start, _step

DEVICE = "HP-000512"


def _fold(readings: list[DeviceReading]) -> DeviceProjection:
    projection = DeviceProjection(DEVICE)
    prev_hash = GENESIS_HASH
    for seq, reading in enumerate(readings, start=1):
        event = seal({
            "event_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"interlocks:{seq}")),
            "device_id": DEVICE, "seq": seq, "type": reading.type,
            "occurred_at": utc_text(reading.occurred_at + timedelta(seconds=seq)),
            "schema_version": 1, "data": dict(reading.data), "prev_hash": prev_hash,
        })  # fmt: skip
        prev_hash = event.hash
        projection.apply(fact_from_body(event.body, event.hash, None))
    return projection


def _told(
    interlocks: Interlocks, *steps: DeviceReading | tuple[str, dict[str, Any]]
) -> list[DeviceReading]:
    readings: list[DeviceReading] = []
    for step in steps:
        if isinstance(step, DeviceReading):
            readings += interlocks.admit(step).readings
        else:
            readings += interlocks.apply_command(*step)
    return readings


def test_the_device_read_model_shows_what_is_engaged() -> None:
    """A refused recalled cartridge counts as a refusal but is not engaged; a spent
    cartridge under ``warn`` is engaged as a warning; a lock makes the device locked,
    with its reason and the seq and time it engaged; unlock releases it."""
    interlocks = Interlocks(DeviceSettings(recalled_lots=("LX",)), clock=lambda: AT)
    readings = _told(
        interlocks, _install("CT-9", "LX"), _install("CT-1", "LA"), _start(), _punch(100),
        _punch(5), ("lock", {"reason": "field safety notice 12"}),
    )  # fmt: skip
    summary = _fold(readings).summary().interlocks
    assert summary.locked
    assert summary.blocking
    assert [(held.interlock, held.mode) for held in summary.active] == [
        ("cartridge_life", "warn"), ("locked", "block")
    ]  # fmt: skip
    lock = summary.active[-1]
    assert lock.reason == "locked by command: field safety notice 12"
    assert lock.since_seq == len(readings)
    assert (summary.refusals, summary.warnings) == (2, 1)
    assert summary.last_refused_install is not None
    assert (summary.last_refused_install.cartridge_id, summary.last_refused_install.seq) == (
        "CT-9", 1
    )  # fmt: skip
    readings += _told(interlocks, ("unlock", {}), _remove())
    after = _fold(readings).summary().interlocks
    assert (after.locked, after.blocking, after.active) == (False, False, ())
    assert (after.refusals, after.warnings) == (2, 1)


def test_service_overdue_under_block_locks_the_device() -> None:
    """Service overdue in ``block`` is a lock (no session may start); in ``warn`` it is
    engaged but the device is not locked."""
    for mode, locked in ((InterlockMode.BLOCK, True), (InterlockMode.WARN, False)):
        interlocks = Interlocks(
            DeviceSettings(service_due_at_actuations=10, service_overdue_mode=mode)
        )
        readings = _told(interlocks, _install(), _start(), _punch(20))
        summary = _fold(readings).summary().interlocks
        assert [held.interlock for held in summary.active] == ["service_overdue"]
        assert summary.locked is locked


@settings(max_examples=150, deadline=None)
@given(st.lists(_step, max_size=50), _settings)
def test_the_platform_sees_what_the_handpiece_holds(
    steps: list[tuple[Any, ...]], initial: DeviceSettings
) -> None:
    """Whatever the sequence, the fold of the recorded events holds engaged exactly
    the causes the handpiece holds, in the same modes, and counts each recorded
    engagement once."""
    interlocks = Interlocks(initial, clock=lambda: AT)
    cartridge: list[str] = []
    readings = [_install("CT-0", "LZ")]
    interlocks.admit(readings[0])
    cartridge.append("CT-0")
    for step in steps:
        readings += _run(interlocks, step, cartridge)
    summary = _fold(readings).summary().interlocks
    held = {cause.value: engagement.mode.value
            for cause, engagement in interlocks.state.engaged.items()}  # fmt: skip
    assert {active.interlock: active.mode for active in summary.active} == held
    engaged = [r.data["mode"] for r in readings if r.type == "interlock.engaged"]
    assert (summary.refusals, summary.warnings) == (engaged.count("block"), engaged.count("warn"))
    assert summary.locked == ("locked" in held or held.get("service_overdue") == "block")
