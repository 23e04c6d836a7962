"""Fleet read models: counts by status, firmware and clinic, and cartridges consumed
per clinic per ISO week."""

from datetime import UTC, datetime, timedelta

from schemas import GENESIS_HASH
from services.projections import (
    CartridgeInstall,
    DeviceProjection,
    DeviceSummary,
    Fact,
    MaintenanceStatus,
    cartridge_install,
    fleet_counts,
    iso_week,
    weekly_cartridge_consumption,
)

MONDAY = datetime(2026, 11, 23, 0, 0, tzinfo=UTC)
"""The first instant of ISO week 2026-W48."""


def _summary(
    device_id: str, firmware: str | None, *, fault: bool = False, online: bool | None = None
) -> DeviceSummary:
    projection = DeviceProjection(device_id)
    facts: list[tuple[str, dict[str, str]]] = []
    if firmware is not None:
        boot = {"firmware_version": firmware, "agent_version": "1.0.0", "boot_id": "b"}
        facts.append(("agent.started", boot))
    if fault:
        facts.append(
            ("fault.raised", {"fault_code": "E-VAC-LOW", "severity": "warning", "message": "low"})
        )
    prev_hash = GENESIS_HASH
    for seq, (kind, data) in enumerate(facts, start=1):
        event_hash = f"{seq:064x}"
        projection.apply(Fact(device_id, seq, kind, MONDAY, None, event_hash, prev_hash, data))
        prev_hash = event_hash
    return projection.summary(online=online)


def test_fleet_counts_by_status_firmware_and_clinic() -> None:
    """Each device counts once per dimension; unassigned devices and devices yet to
    report firmware count under ``None``."""
    devices = [
        _summary("HP-000001", "2.4.1"),
        _summary("HP-000002", "2.4.1", fault=True),
        _summary("HP-000003", "2.3.7", online=False),
        _summary("HP-000004", None),
    ]
    clinic_of = {"HP-000001": "CL-A", "HP-000002": "CL-A", "HP-000003": "CL-B"}
    counts = fleet_counts(devices, clinic_of)
    assert counts.by_status == {
        MaintenanceStatus.OK: 2,
        MaintenanceStatus.FAULT: 1,
        MaintenanceStatus.OFFLINE: 1,
    }
    assert counts.by_firmware == {"2.4.1": 2, "2.3.7": 1, None: 1}
    assert counts.by_clinic == {"CL-A": 2, "CL-B": 1, None: 1}
    assert fleet_counts([], clinic_of).by_status == {}


def test_iso_weeks_run_monday_to_sunday_in_utc_and_follow_the_iso_year() -> None:
    """Sunday 23:59 UTC is the week before Monday 00:00; 1 January 2027 is in 2026-W53."""
    assert iso_week(MONDAY) == "2026-W48"
    assert iso_week(MONDAY - timedelta(minutes=1)) == "2026-W47"
    assert iso_week(datetime(2027, 1, 1, 12, tzinfo=UTC)) == "2026-W53"
    assert iso_week(datetime(2027, 1, 4, tzinfo=UTC)) == "2027-W01"


def test_weekly_consumption_counts_each_cartridge_once_per_clinic_week() -> None:
    """Cartridges installed per clinic per week; one put back later is not consumed
    again, whatever order the installs are read in."""
    installs = [
        CartridgeInstall("HP-000001", "CT-1", MONDAY + timedelta(hours=9)),
        CartridgeInstall("HP-000001", "CT-2", MONDAY + timedelta(days=2)),
        CartridgeInstall("HP-000002", "CT-3", MONDAY + timedelta(days=7)),
        CartridgeInstall("HP-000001", "CT-1", MONDAY + timedelta(days=8)),
        CartridgeInstall("HP-000003", "CT-4", MONDAY - timedelta(minutes=1)),
        CartridgeInstall("HP-000009", "CT-5", MONDAY),
    ]
    clinic_of = {"HP-000001": "CL-A", "HP-000002": "CL-A", "HP-000003": "CL-B"}
    expected = {
        "CL-A": {"2026-W48": 2, "2026-W49": 1},
        "CL-B": {"2026-W47": 1},
        None: {"2026-W48": 1},
    }
    assert weekly_cartridge_consumption(installs, clinic_of) == expected
    assert weekly_cartridge_consumption(reversed(installs), clinic_of) == expected


def test_installs_come_from_cartridge_installed_facts_only() -> None:
    """``cartridge_install`` reads a ``cartridge.installed`` fact and nothing else."""
    data = {"cartridge_id": "CT-7", "lot": "L1", "needles": 3}
    installed = Fact("HP-000001", 2, "cartridge.installed", MONDAY, None, "b" * 64, "a" * 64, data)
    assert cartridge_install(installed) == CartridgeInstall("HP-000001", "CT-7", MONDAY)
    other = Fact("HP-000001", 3, "cartridge.removed", MONDAY, None, "c" * 64, "b" * 64, data)
    assert cartridge_install(other) is None
