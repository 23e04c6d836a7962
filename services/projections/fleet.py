"""Fleet read models (DESIGN §6): counts across devices and cartridge consumption.

Which clinic owns a device is the registry's knowledge, not the device's, so every
helper takes a ``device_id → clinic_id`` mapping; a device missing from it (or mapped
to ``None``) is unassigned and counted under ``None``.
"""

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from services.projections.device_summary import DeviceSummary
from services.projections.facts import Fact, event_time
from services.projections.maintenance import MaintenanceStatus


@dataclass(frozen=True, slots=True)
class FleetCounts:
    by_status: dict[MaintenanceStatus, int]
    by_firmware: dict[str | None, int]
    """``None``: the device has not reported a firmware version yet."""
    by_clinic: dict[str | None, int]
    """``None``: unassigned."""


def fleet_counts(
    devices: Iterable[DeviceSummary], clinic_of: Mapping[str, str | None]
) -> FleetCounts:
    by_status: Counter[MaintenanceStatus] = Counter()
    by_firmware: Counter[str | None] = Counter()
    by_clinic: Counter[str | None] = Counter()
    for device in devices:
        by_status[device.status] += 1
        by_firmware[device.firmware_version] += 1
        by_clinic[clinic_of.get(device.device_id)] += 1
    return FleetCounts(dict(by_status), dict(by_firmware), dict(by_clinic))


@dataclass(frozen=True, slots=True)
class CartridgeInstall:
    device_id: str
    cartridge_id: str
    installed_at: datetime
    """The device's clock at ``cartridge.installed`` (its receive time when that clock
    is skewed: ``facts.event_time``)."""


def cartridge_install(fact: Fact) -> CartridgeInstall | None:
    """The install a fact records, if it is a ``cartridge.installed``."""
    if fact.type != "cartridge.installed":
        return None
    return CartridgeInstall(fact.device_id, fact.data["cartridge_id"], event_time(fact))


def iso_week(moment: datetime) -> str:
    """The ISO 8601 week of ``moment`` in UTC, as ``2026-W48``.

    UTC because a clinic's time zone is not known here; a week then runs from Monday
    00:00 UTC, the same for every clinic, so weekly figures add up across the fleet.
    """
    year, week, _ = moment.astimezone(UTC).isocalendar()
    return f"{year}-W{week:02d}"


def weekly_cartridge_consumption(
    installs: Iterable[CartridgeInstall], clinic_of: Mapping[str, str | None]
) -> dict[str | None, dict[str, int]]:
    """Cartridges consumed per clinic per ISO week: ``{clinic_id: {"2026-W48": n}}``.

    A cartridge taken out and put back is one cartridge consumed, counted in the week
    it was first installed; the earliest install wins whatever order installs come
    in, so the figures do not depend on how the events were read.
    """
    first: dict[str, CartridgeInstall] = {}
    for install in installs:
        known = first.get(install.cartridge_id)
        if known is None or install.installed_at < known.installed_at:
            first[install.cartridge_id] = install
    consumption: dict[str | None, dict[str, int]] = {}
    for install in first.values():
        weeks = consumption.setdefault(clinic_of.get(install.device_id), {})
        week = iso_week(install.installed_at)
        weeks[week] = weeks.get(week, 0) + 1
    return consumption
