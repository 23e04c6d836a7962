"""The handpiece's interlocks: what each cause refuses or warns about, how each is
released, and (with hypothesis) that over any sequence no punch goes through while a
block holds and each refusal is recorded exactly once per cause."""

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.device import DeviceReading
from edge_agent.interlock_state import InterlockState
from edge_agent.interlocks import InterlockCommandError, Interlocks
from schemas.command_events import CommandRejection
from schemas.device_config import DeviceSettings, InterlockMode
from schemas.interlock_events import Interlock, InterlockEngagedData, InterlockReleasedData

AT: Final = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
SESSION: Final = "0b6c2a4e-6d1f-4c3e-9a7e-2f1f0c9d8e11"
BLOCK: Final = InterlockMode.BLOCK
WARN: Final = InterlockMode.WARN
RECALLED: Final = Interlock.RECALLED_LOT


def _install(cartridge_id: str = "CT-1", lot: str = "L2607A", rated: int = 100) -> DeviceReading:
    data = {"cartridge_id": cartridge_id, "lot": lot, "needles": 5, "needle_gauge": 22,
            "core_diameter_mm": 0.5, "rated_actuations": rated}  # fmt: skip
    return DeviceReading("cartridge.installed", AT, data)


def _remove(cartridge_id: str = "CT-1") -> DeviceReading:
    data = {"cartridge_id": cartridge_id, "actuations_total": 0, "reason": "worn"}
    return DeviceReading("cartridge.removed", AT, data)


def _start(cartridge_id: str = "CT-1") -> DeviceReading:
    data = {"session_id": SESSION, "treatment_area": "neck", "area_cm2": 80.0,
            "operator_ref": "op-1", "cartridge_id": cartridge_id}  # fmt: skip
    return DeviceReading("session.started", AT, data)


def _punch(actuations: int, cartridge_id: str = "CT-1") -> DeviceReading:
    window = AT.isoformat().replace("+00:00", "Z")
    data = {"session_id": SESSION, "cartridge_id": cartridge_id, "actuations": actuations,
            "cores": actuations * 5, "depth_mm": 1.5, "window_start": window,
            "window_end": window}  # fmt: skip
    return DeviceReading("cores.punched", AT, data)


def _kinds(readings: tuple[DeviceReading, ...] | list[DeviceReading]) -> list[str]:
    return [reading.type for reading in readings]


def _interlock_data(reading: DeviceReading) -> tuple[str, ...]:
    data = reading.data
    if reading.type == "interlock.engaged":
        return ("engaged", data["interlock"], data["mode"])
    return ("released", data["interlock"], data["by"])


def _handpiece(**changes: Any) -> Interlocks:
    interlocks = Interlocks(DeviceSettings(**changes), clock=lambda: AT)
    assert interlocks.admit(_install()).admitted
    return interlocks


def test_a_recalled_lot_is_refused_at_install_once() -> None:
    """A cartridge of a recalled lot is refused with one ``interlock.engaged``
    {recalled_lot, block} naming cartridge and lot, never recorded as installed;
    trying it again is refused without a second event."""
    interlocks = Interlocks(DeviceSettings(recalled_lots=("L2607A",)))
    first = interlocks.admit(_install(lot="L2607A"))
    assert not first.admitted
    assert _kinds(first.readings) == ["interlock.engaged"]
    assert first.readings[0].data == {
        "interlock": "recalled_lot", "mode": "block", "cartridge_id": "CT-1", "lot": "L2607A",
        "reason": "cartridge CT-1: lot L2607A is recalled",
    }  # fmt: skip
    again = interlocks.admit(_install(lot="L2607A"))
    assert (again.admitted, again.readings, again.refused_by) == (False, (), first.refused_by)
    assert interlocks.state.cartridge is None
    fine = interlocks.admit(_install("CT-2", lot="L2607B"))
    assert fine.admitted
    assert _kinds(fine.readings) == ["cartridge.installed"]


def test_a_spent_cartridge_only_warns_once_under_warn() -> None:
    """Under ``warn`` a cartridge past its rating is recorded once, and punching and
    new sessions go on."""
    interlocks = _handpiece(cartridge_life_mode=WARN)
    assert _kinds(interlocks.admit(_start()).readings) == ["session.started"]
    assert interlocks.admit(_punch(100)).admitted
    warned = interlocks.admit(_punch(10))
    assert warned.admitted
    assert [_interlock_data(r) for r in warned.readings[:1]] == [
        ("engaged", "cartridge_life", "warn")
    ]
    assert _kinds(warned.readings) == ["interlock.engaged", "cores.punched"]
    assert _kinds(interlocks.admit(_punch(10)).readings) == ["cores.punched"]
    assert _kinds(interlocks.admit(_start()).readings) == ["session.started"]
    released = interlocks.admit(_remove())
    assert [_interlock_data(r) for r in released.readings[1:]] == [
        ("released", "cartridge_life", "cartridge_removed")
    ]


def test_a_spent_cartridge_blocks_punching_under_block_until_removed() -> None:
    """Under ``block`` the window after the rating is refused, recorded once; the
    next session cannot start either; removing the cartridge releases it."""
    interlocks = _handpiece(cartridge_life_mode=BLOCK)
    interlocks.admit(_start())
    assert interlocks.actuations_left() == 100
    assert interlocks.admit(_punch(100)).admitted
    assert interlocks.actuations_left() == 0
    refused = interlocks.admit(_punch(5))
    assert (refused.admitted, refused.refused_by) == (False, "cartridge_life")
    assert [_interlock_data(r) for r in refused.readings] == [
        ("engaged", "cartridge_life", "block")
    ]
    assert interlocks.admit(_punch(5)).readings == ()
    assert not interlocks.admit(_start()).admitted
    assert interlocks.blocking() == ("cartridge_life",)
    assert _kinds(interlocks.admit(_remove()).readings) == [
        "cartridge.removed", "interlock.released"
    ]  # fmt: skip
    assert interlocks.admit(_install("CT-2")).admitted
    assert interlocks.admit(_punch(5, "CT-2")).admitted
    assert interlocks.state.lifetime_actuations == 105


def test_a_cartridge_put_back_keeps_its_count() -> None:
    """A spent cartridge taken out and put back is still spent."""
    interlocks = _handpiece(cartridge_life_mode=BLOCK)
    interlocks.admit(_punch(100))
    interlocks.admit(_remove())
    interlocks.admit(_install())
    assert not interlocks.admit(_punch(1)).admitted


def test_service_overdue_locks_new_sessions_under_block_until_serviced() -> None:
    """Crossing the service point is recorded at once; the session under way goes
    on, the next may not start; a configuration with a later service point (a
    service recorded) releases it as ``serviced``."""
    interlocks = _handpiece(
        service_due_at_actuations=50, service_overdue_mode=BLOCK, cartridge_life_mode=WARN
    )
    interlocks.admit(_start())
    crossing = interlocks.admit(_punch(60))
    assert [_interlock_data(r) for r in crossing.readings[1:]] == [
        ("engaged", "service_overdue", "block")
    ]
    assert interlocks.admit(_punch(1)).admitted
    refused = interlocks.admit(_start())
    assert (refused.admitted, refused.refused_by, refused.readings) == (
        False, "service_overdue", ()
    )  # fmt: skip
    released = interlocks.configure(interlocks.settings.model_copy(
        update={"service_due_at_actuations": 300}
    ))  # fmt: skip
    assert [_interlock_data(r) for r in released] == [("released", "service_overdue", "serviced")]
    assert interlocks.admit(_start()).admitted


def test_service_overdue_under_warn_is_recorded_once_per_service_point() -> None:
    """Under ``warn`` service overdue is recorded once and nothing is refused."""
    interlocks = _handpiece(service_due_at_actuations=10)
    events = [r for step in (_start(), _punch(20), _punch(5), _start())
              for r in interlocks.admit(step).readings]  # fmt: skip
    assert [_interlock_data(r) for r in events if r.type.startswith("interlock")] == [
        ("engaged", "service_overdue", "warn")
    ]


def test_lock_and_unlock_by_command() -> None:
    """``lock`` blocks sessions and punches; ``unlock`` releases; both idempotent."""
    interlocks = _handpiece()
    locked = interlocks.apply_command("lock", {})
    assert [_interlock_data(r) for r in locked] == [("engaged", "locked", "block")]
    assert interlocks.apply_command("lock", {}) == []
    assert not interlocks.admit(_start()).admitted
    assert interlocks.admit(_punch(1)).refused_by == "locked"
    assert [_interlock_data(r) for r in interlocks.apply_command("unlock", {})] == [
        ("released", "locked", "unlocked")
    ]
    assert interlocks.apply_command("unlock", {}) == []
    assert interlocks.admit(_start()).admitted


def test_an_override_releases_a_cause_for_its_subject_only() -> None:
    """``override_interlock`` releases an engaged cause as ``override`` and holds for
    that cartridge only; the next spent cartridge is blocked again."""
    interlocks = _handpiece(cartridge_life_mode=BLOCK)
    interlocks.admit(_punch(100))
    interlocks.admit(_punch(1))
    released = interlocks.apply_command("override_interlock", {"interlock": "cartridge_life"})
    assert [_interlock_data(r) for r in released] == [("released", "cartridge_life", "override")]
    assert interlocks.actuations_left() is None
    assert _kinds(interlocks.admit(_punch(7)).readings) == ["cores.punched"]
    assert _kinds(interlocks.admit(_remove()).readings) == ["cartridge.removed"]
    interlocks.admit(_install("CT-2"))
    interlocks.admit(_punch(100, "CT-2"))
    assert not interlocks.admit(_punch(1, "CT-2")).admitted


def test_an_override_of_a_lock_unlocks() -> None:
    """An override of ``locked`` releases it as ``override``."""
    interlocks = _handpiece()
    interlocks.apply_command("lock", {})
    released = interlocks.apply_command("override_interlock", {"interlock": "locked"})
    assert [_interlock_data(r) for r in released] == [("released", "locked", "override")]
    assert interlocks.admit(_punch(1)).admitted


@pytest.mark.parametrize(
    ("name", "args", "rejection"),
    [
        ("override_interlock", {"interlock": "cartridge_life"}, CommandRejection.NOT_APPLICABLE),
        ("override_interlock", {"interlock": "recalled_lot"}, CommandRejection.NOT_APPLICABLE),
        ("override_interlock", {"interlock": "brakes"}, CommandRejection.INVALID),
        ("override_interlock", {}, CommandRejection.INVALID),
        ("reboot", {}, CommandRejection.UNKNOWN),
    ],
)
def test_commands_that_do_not_apply_change_nothing(
    name: str, args: dict[str, Any], rejection: CommandRejection
) -> None:
    """An override of nothing engaged, bad args or another command raise with the
    rejection to answer, and change nothing."""
    interlocks = _handpiece()
    before = interlocks.state.to_json()
    with pytest.raises(InterlockCommandError) as raised:
        interlocks.apply_command(name, args)
    assert raised.value.rejection is rejection
    assert interlocks.state.to_json() == before


def test_a_recall_of_the_installed_cartridge_blocks_at_once() -> None:
    """A configuration recalling the installed cartridge's lot engages at once and
    blocks punching; taking the lot off the list releases it as ``config``."""
    interlocks = _handpiece()
    recalled = interlocks.configure(DeviceSettings(recalled_lots=("L2607A",)))
    assert [_interlock_data(r) for r in recalled] == [("engaged", "recalled_lot", "block")]
    assert recalled[0].data["lot"] == "L2607A"
    assert interlocks.admit(_punch(1)).refused_by == "recalled_lot"
    assert [_interlock_data(r) for r in interlocks.configure(DeviceSettings())] == [
        ("released", "recalled_lot", "config")
    ]
    assert interlocks.admit(_punch(1)).admitted


def test_a_mode_change_records_the_cause_anew() -> None:
    """From ``warn`` to ``block`` and back, an engaged cause is recorded in its new
    mode, and blocks only while ``block``."""
    interlocks = _handpiece()
    interlocks.admit(_punch(100))
    interlocks.admit(_punch(1))
    blocking = interlocks.configure(DeviceSettings(cartridge_life_mode=BLOCK))
    assert [_interlock_data(r) for r in blocking] == [("engaged", "cartridge_life", "block")]
    assert not interlocks.admit(_punch(1)).admitted
    interlocks.configure(DeviceSettings())
    assert interlocks.admit(_punch(1)).admitted


def test_events_validate_against_their_schema() -> None:
    """Every interlock event the module builds is a valid ``interlock.*`` data."""
    interlocks = Interlocks(DeviceSettings(recalled_lots=("L1",)), clock=lambda: AT)
    readings = [
        *interlocks.admit(_install(lot="L1")).readings,
        *interlocks.apply_command("lock", {}),
        *interlocks.apply_command("unlock", {}),
    ]
    for reading in readings:
        model = (
            InterlockEngagedData if reading.type == "interlock.engaged" else InterlockReleasedData
        )
        model.model_validate(reading.data)


def test_the_state_survives_a_restart() -> None:
    """A kept snapshot restores the same decisions (a locked handpiece stays locked)."""
    interlocks = _handpiece(cartridge_life_mode=BLOCK)
    interlocks.admit(_punch(40))
    interlocks.apply_command("lock", {})
    restored = Interlocks(
        interlocks.settings, state=InterlockState.from_json(interlocks.state.to_json())
    )
    assert restored.state == interlocks.state
    assert restored.admit(_punch(1)).refused_by == "locked"
    with pytest.raises(ValueError, match="not a kept interlock state"):
        InterlockState.from_json(b'{"cartridge": 3}')


# -- properties over random sequences ------------------------------------------------


@dataclass(slots=True)
class _Audit:
    """What an independent observer of the recorded stream knows."""

    installed: tuple[str, str] | None = None
    """The installed cartridge's id and lot."""
    lifetime: int = 0
    active: dict[str, tuple[str, str | None]] = field(default_factory=dict)
    """Engaged, not released: cause → (mode, subject)."""
    refused_installs: set[str] = field(default_factory=set)


_LOTS: Final = ("LA", "LB", "LC")
_CARTRIDGES: Final = ("CT-1", "CT-2", "CT-3")
_settings = st.builds(
    DeviceSettings,
    cartridge_life_mode=st.sampled_from(InterlockMode),
    recalled_lots=st.lists(st.sampled_from(_LOTS), max_size=2, unique=True).map(tuple),
    service_due_at_actuations=st.none() | st.integers(0, 400),
    service_overdue_mode=st.sampled_from(InterlockMode),
)
_step = st.one_of(
    st.tuples(st.just("install"), st.sampled_from(_CARTRIDGES), st.sampled_from(_LOTS)),
    st.tuples(st.just("remove")),
    st.tuples(st.just("start")),
    st.tuples(st.just("punch"), st.integers(1, 60)),
    st.tuples(st.just("configure"), _settings),
    st.tuples(st.just("command"), st.sampled_from(["lock", "unlock", "override_interlock"]),
              st.sampled_from(["cartridge_life", "recalled_lot", "service_overdue", "locked"])),
)  # fmt: skip


def _blocked_by(interlocks: Interlocks, punch: bool) -> set[str]:
    """The causes that must refuse a punch (or a session start) right now, judged
    from the state and settings by the rules as documented, not by the module."""
    state, settings = interlocks.state, interlocks.settings
    causes = set()
    if state.locked:
        causes.add("locked")
    cartridge = state.cartridge
    if cartridge is not None:
        overridden = state.overridden
        mine = cartridge.cartridge_id
        if cartridge.lot in settings.recalled_lots and overridden.get(RECALLED) != mine:
            causes.add("recalled_lot")
        if (
            cartridge.spent
            and settings.cartridge_life_mode is BLOCK
            and overridden.get(Interlock.CARTRIDGE_LIFE) != mine
        ):
            causes.add("cartridge_life")
    due = settings.service_due_at_actuations
    if (
        not punch
        and due is not None
        and state.lifetime_actuations >= due
        and settings.service_overdue_mode is BLOCK
        and state.overridden.get(Interlock.SERVICE_OVERDUE) != str(due)
    ):
        causes.add("service_overdue")
    return causes


def _run(
    interlocks: Interlocks, step: tuple[Any, ...], cartridge: list[str]
) -> list[DeviceReading]:
    kind = step[0]
    if kind == "install":
        verdict = interlocks.admit(_install(step[1], step[2]))
        if verdict.admitted:
            cartridge[:] = [step[1]]
        return list(verdict.readings)
    if kind == "remove":
        if not cartridge:
            return []
        readings = list(interlocks.admit(_remove(cartridge[0])).readings)
        cartridge.clear()
        return readings
    if kind in {"start", "punch"}:
        if not cartridge:
            return []
        punch = kind == "punch"
        must_refuse = _blocked_by(interlocks, punch)
        reading = _punch(step[1], cartridge[0]) if punch else _start(cartridge[0])
        verdict = interlocks.admit(reading)
        assert verdict.admitted is not bool(must_refuse), (step, must_refuse, verdict)
        assert (reading in verdict.readings) is verdict.admitted
        if not verdict.admitted:
            assert verdict.refused_by in must_refuse
        return list(verdict.readings)
    if kind == "configure":
        return interlocks.configure(step[1])
    try:
        return interlocks.apply_command(step[1], {"interlock": step[2]})
    except InterlockCommandError:
        return []


def _audit(audit: _Audit, readings: list[DeviceReading]) -> None:
    for reading in readings:
        data: Mapping[str, Any] = reading.data
        if reading.type == "interlock.engaged":
            cause, mode = data["interlock"], data["mode"]
            if cause == "recalled_lot" and audit.installed != (data["cartridge_id"], data["lot"]):
                key = f"{data['cartridge_id']}:{data['lot']}"
                assert key not in audit.refused_installs, "an install refusal recorded twice"
                audit.refused_installs.add(key)
                continue
            subject = data["cartridge_id"]
            assert audit.active.get(cause) != (mode, subject) or cause == "service_overdue", (
                f"{cause} recorded twice while engaged"
            )
            audit.active[cause] = (mode, subject)
        elif reading.type == "interlock.released":
            assert data["interlock"] in audit.active, "released what was not engaged"
            del audit.active[data["interlock"]]
        elif reading.type == "cartridge.installed":
            audit.installed = (data["cartridge_id"], data["lot"])
        elif reading.type == "cartridge.removed":
            audit.installed = None
        elif reading.type == "cores.punched":
            assert "locked" not in audit.active, "a punch while locked"
            for cause in ("cartridge_life", "recalled_lot"):
                held = audit.active.get(cause)
                assert held is None or held[0] == "warn", f"a punch while {cause} blocks"
            audit.lifetime += data["actuations"]
    if audit.installed is None:
        assert not {"cartridge_life", "recalled_lot"} & audit.active.keys(), (
            "a cartridge interlock outlived its cartridge"
        )


@settings(max_examples=300, deadline=None)
@given(st.lists(_step, max_size=60), _settings)
def test_no_punch_while_blocked_and_each_refusal_recorded_once(
    steps: list[tuple[Any, ...]], initial: DeviceSettings
) -> None:
    """Over any sequence of installs, removals, session starts, punches, new
    configurations and commands: a punch or session start is refused exactly when a
    block holds, the recorded stream never shows a punch while a block is engaged,
    each cause is recorded once per engagement, and a restart restores the state."""
    interlocks = Interlocks(initial, clock=lambda: AT)
    cartridge: list[str] = []
    audit = _Audit()
    recorded: list[DeviceReading] = []
    for step in steps:
        readings = _run(interlocks, step, cartridge)
        _audit(audit, readings)
        recorded += readings
        for reading in readings:
            if reading.type.startswith("interlock."):
                model = (InterlockEngagedData if reading.type.endswith("engaged")
                         else InterlockReleasedData)  # fmt: skip
                model.model_validate(reading.data)
    assert audit.lifetime == interlocks.state.lifetime_actuations
    replayed = Interlocks(interlocks.settings)
    for reading in recorded:
        replayed.observe(reading.type, reading.data)
    assert replayed.state.engaged.keys() == interlocks.state.engaged.keys()
    assert replayed.state.lifetime_actuations == interlocks.state.lifetime_actuations
    kept = InterlockState.from_json(interlocks.state.to_json())
    assert kept == interlocks.state


def test_the_clock_dates_configuration_and_command_events() -> None:
    """Events of a configuration or a command carry the caller's clock."""
    later = AT + timedelta(hours=2)
    interlocks = Interlocks(clock=lambda: later)
    assert interlocks.apply_command("lock", {})[0].occurred_at == later
