"""Simulated handpieces obey the same interlocks as the agent: a recalled lot never
becomes current, a spent cartridge is swapped under ``block`` and only warned about
under ``warn``, and a locked handpiece punches nothing until it is released."""

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Final

from edge_agent.device import DeviceReading
from schemas import Heartbeat
from schemas.device_config import DeviceSettings, InterlockMode
from simulation import HandpieceSimulator, SimulatorProfile, fleet_device_ids

START: Final = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)
OVERUSING: Final = SimulatorProfile(cartridge_overuse_probability=1.0)
"""Every cartridge kept past its rating, unless the handpiece stops it."""


def _readings(items: list[DeviceReading | Heartbeat]) -> list[DeviceReading]:
    return [item for item in items if isinstance(item, DeviceReading)]


def _run(
    settings: DeviceSettings, hours: float, profile: SimulatorProfile = OVERUSING, devices: int = 3
) -> dict[str, list[DeviceReading]]:
    told = {}
    for device_id in fleet_device_ids(devices, first=301):
        simulator = HandpieceSimulator(device_id, 7, START, profile)
        simulator.interlocks.configure(settings, START)
        told[device_id] = _readings(simulator.advance(START + timedelta(hours=hours)))
    return told


def _cartridge_use(readings: list[DeviceReading]) -> dict[str, tuple[int, int]]:
    """Cartridge id → (actuations punched, rated actuations)."""
    rated: dict[str, int] = {}
    used: Counter[str] = Counter()
    for reading in readings:
        if reading.type == "cartridge.installed":
            rated[reading.data["cartridge_id"]] = reading.data["rated_actuations"]
        elif reading.type == "cores.punched":
            used[reading.data["cartridge_id"]] += reading.data["actuations"]
    return {cartridge: (used[cartridge], rating) for cartridge, rating in rated.items()}


def _engaged(readings: list[DeviceReading]) -> list[tuple[str, str, str | None]]:
    return [
        (reading.data["interlock"], reading.data["mode"], reading.data["cartridge_id"])
        for reading in readings
        if reading.type == "interlock.engaged"
    ]


def test_under_block_no_cartridge_goes_past_its_rating() -> None:
    """With every cartridge overused by its clinic, ``block`` stops each at its
    rating (recorded once per cartridge) and the operator swaps it."""
    for readings in _run(DeviceSettings(cartridge_life_mode=InterlockMode.BLOCK), 30).values():
        use = _cartridge_use(readings)
        assert all(used <= rating for used, rating in use.values()), use
        engaged = _engaged(readings)
        assert engaged, "no cartridge reached its rating in 30 hours"
        assert len(engaged) == len(set(engaged)), "a refusal recorded twice"
        assert {mode for _, mode, _ in engaged} == {"block"}
        at_rating = {cartridge for cartridge, (used, rating) in use.items() if used == rating}
        assert {cartridge for _, _, cartridge in engaged} <= at_rating
        released = [r.data["by"] for r in readings if r.type == "interlock.released"]
        assert released
        assert set(released) == {"cartridge_removed"}


def test_under_warn_cartridges_go_past_their_rating_with_one_warning_each() -> None:
    """Under ``warn`` (the default) overused cartridges punch on past the rating,
    and each is recorded once."""
    for readings in _run(DeviceSettings(), 30).values():
        use = _cartridge_use(readings)
        past = {cartridge for cartridge, (used, rating) in use.items() if used > rating}
        engaged = _engaged(readings)
        assert past, "no cartridge went past its rating"
        assert [cartridge for _, _, cartridge in engaged] == sorted(
            {cartridge for _, _, cartridge in engaged},
            key=[cartridge for _, _, cartridge in engaged].index,
        )
        assert {mode for _, mode, _ in engaged} == {"warn"}
        assert {cartridge for _, _, cartridge in engaged} == past


def test_a_recalled_lot_is_never_installed_and_the_story_goes_on() -> None:
    """Recalling the lots a fleet draws most: each refused cartridge is recorded once
    and never installed; the handpiece installs another lot and treats on."""
    unconfigured = _run(DeviceSettings(), 24, SimulatorProfile(), devices=6)
    lots = Counter(r.data["lot"] for readings in unconfigured.values()
                   for r in readings if r.type == "cartridge.installed")  # fmt: skip
    recalled = tuple(lot for lot, _ in lots.most_common(2))
    told = _run(DeviceSettings(recalled_lots=recalled), 24, SimulatorProfile(), devices=6)
    refusals = 0
    for readings in told.values():
        installed = [r.data for r in readings if r.type == "cartridge.installed"]
        assert installed
        assert all(data["lot"] not in recalled for data in installed)
        engaged = [r.data for r in readings if r.type == "interlock.engaged"
                   and r.data["interlock"] == "recalled_lot"]  # fmt: skip
        assert all(data["mode"] == "block" and data["lot"] in recalled for data in engaged)
        refused_ids = [data["cartridge_id"] for data in engaged]
        assert len(refused_ids) == len(set(refused_ids))
        assert not set(refused_ids) & {data["cartridge_id"] for data in installed}
        assert any(r.type == "session.ended" for r in readings)
        refusals += len(engaged)
    assert refusals > 0


def test_a_locked_handpiece_punches_nothing_until_unlocked() -> None:
    """A lock in the middle of the day: the session under way ends ``aborted`` at
    its next window, nothing is punched or started while locked, and after unlock
    the handpiece treats again."""
    simulator = HandpieceSimulator("HP-000401", 11, START)
    before = _readings(simulator.advance(START + timedelta(hours=6)))
    locked = simulator.interlocks.apply_command("lock", {})
    assert [r.occurred_at for r in locked] == [simulator.now()]
    while_locked = _readings(simulator.advance(START + timedelta(hours=14)))
    unlocked = simulator.interlocks.apply_command("unlock", {})
    after = _readings(simulator.advance(START + timedelta(hours=30)))
    assert any(r.type == "cores.punched" for r in before)
    assert not [r for r in while_locked if r.type in {"cores.punched", "session.started"}]
    ended = [r.data["reason"] for r in while_locked if r.type == "session.ended"]
    assert ended in ([], ["aborted"])
    assert [r.data["by"] for r in unlocked] == ["unlocked"]
    assert any(r.type == "cores.punched" for r in after)
    times = [r.occurred_at for r in [*before, *locked, *while_locked, *unlocked, *after]]
    assert times == sorted(times), "the device's times ran backwards"
