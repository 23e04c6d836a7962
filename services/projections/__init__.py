"""Read models folded from event streams: devices, session audits, the fleet.

Pure: no I/O, no database, no clock.  A runner feeds each device's facts (built with
``fact_from_body`` or ``fact_from_wire``) to its ``DeviceProjection`` in any order;
``apply`` folds them in seq order and returns the ``Change`` values to store and to
alert on.
"""

from services.projections.cartridge import (
    InstalledCartridge,
    actuations_left,
    life_reached,
    life_used_pct,
)
from services.projections.changes import (
    Applied,
    Change,
    FaultClosed,
    FaultOpened,
    FindingRecorded,
    SessionChanged,
    SessionClosed,
)
from services.projections.custody import Custody, CustodyInterval, assign, event_owner
from services.projections.device import RECENT_CARTRIDGES, DeviceProjection, fold_device
from services.projections.device_summary import DeviceSummary
from services.projections.errors import ProjectionError
from services.projections.facts import (
    CLOCK_FLOOR,
    CLOCK_SKEW_TOLERANCE,
    Fact,
    clock_skewed,
    event_time,
    fact_from_body,
    fact_from_wire,
    implausible_device_time,
    parse_timestamp,
)
from services.projections.faults import OpenFault
from services.projections.findings import Finding, FindingKind
from services.projections.fleet import (
    CartridgeInstall,
    FleetCounts,
    cartridge_install,
    fleet_counts,
    iso_week,
    weekly_cartridge_consumption,
)
from services.projections.forecast import (
    RECENT_PUNCHING_S,
    NeedleLifeForecast,
    PunchRate,
    forecast_message,
    forecast_needle_life,
)
from services.projections.maintenance import (
    DEFAULT_POLICY,
    DEFAULT_SERVICE_INTERVAL,
    MaintenancePolicy,
    MaintenanceStatus,
    headline_status,
    maintenance_attention,
)
from services.projections.session import SessionAudit

__all__ = [
    "CLOCK_FLOOR",
    "CLOCK_SKEW_TOLERANCE",
    "DEFAULT_POLICY",
    "DEFAULT_SERVICE_INTERVAL",
    "RECENT_CARTRIDGES",
    "RECENT_PUNCHING_S",
    "Applied",
    "CartridgeInstall",
    "Change",
    "Custody",
    "CustodyInterval",
    "DeviceProjection",
    "DeviceSummary",
    "Fact",
    "FaultClosed",
    "FaultOpened",
    "Finding",
    "FindingKind",
    "FindingRecorded",
    "FleetCounts",
    "InstalledCartridge",
    "MaintenancePolicy",
    "MaintenanceStatus",
    "NeedleLifeForecast",
    "OpenFault",
    "ProjectionError",
    "PunchRate",
    "SessionAudit",
    "SessionChanged",
    "SessionClosed",
    "actuations_left",
    "assign",
    "cartridge_install",
    "clock_skewed",
    "event_owner",
    "event_time",
    "fact_from_body",
    "fact_from_wire",
    "fleet_counts",
    "fold_device",
    "forecast_message",
    "forecast_needle_life",
    "headline_status",
    "implausible_device_time",
    "iso_week",
    "life_reached",
    "life_used_pct",
    "maintenance_attention",
    "parse_timestamp",
    "weekly_cartridge_consumption",
]
