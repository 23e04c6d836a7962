"""The fleet overview: counts by status, firmware and clinic; cartridges per week."""

from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import Connection, func, select, true

from services.api.access import Principal
from services.api.models import CartridgeWeek, CountBy, FleetOverview
from services.api.queries.alerts import count_open_alerts
from services.api.queries.devices import OFFLINE, effective_status
from services.api.queries.scope import scoped
from services.api.queries.sessions import session_query
from services.api.queries.tables import READ, presence
from services.projections.maintenance import MaintenanceStatus

_devices, _weeks = READ.devices, READ.cartridge_weeks
CARTRIDGE_LOW: Final = MaintenanceStatus.CARTRIDGE_LOW.value
CARTRIDGE_EXHAUSTED: Final = MaintenanceStatus.CARTRIDGE_EXHAUSTED.value


def fleet_overview(connection: Connection, principal: Principal, weeks: int = 12) -> FleetOverview:
    in_scope = scoped(principal, _devices.c.clinic_id)
    with_presence = _devices.outerjoin(presence, presence.c.device_id == _devices.c.device_id)

    def counts(column: Any) -> list[CountBy]:
        query = (
            select(column, func.count())
            .select_from(with_presence)
            .where(in_scope)
            .group_by(column)
            .order_by(func.count().desc())
        )
        return [CountBy(key=key, count=count) for key, count in connection.execute(query)]

    by_status = counts(effective_status)
    week_rows = connection.execute(
        select(_weeks.c.clinic_id, _weeks.c.week, _weeks.c.installed)
        .where(scoped(principal, _weeks.c.clinic_id))
        .order_by(_weeks.c.week.desc(), _weeks.c.clinic_id)
        .limit(weeks * 50)
    )
    locked, blocked, refusals, warnings = connection.execute(
        select(
            func.count().filter(_interlock("locked").as_boolean() == true()),
            func.count().filter(_interlock("blocking").as_boolean() == true()),
            func.coalesce(func.sum(_interlock("refusals").as_integer()), 0),
            func.coalesce(func.sum(_interlock("warnings").as_integer()), 0),
        ).where(in_scope)
    ).one()
    return FleetOverview(
        devices=sum(count.count for count in by_status),
        by_status=by_status,
        by_firmware=counts(_devices.c.firmware_version),
        by_clinic=counts(_devices.c.clinic_id),
        open_alerts=count_open_alerts(connection, principal),
        cartridges_per_week=[
            CartridgeWeek(clinic_id=clinic or None, week=week, installed=installed)
            for clinic, week, installed in week_rows
        ],
        locked_devices=locked,
        blocked_devices=blocked,
        interlock_refusals=refusals,
        interlock_warnings=warnings,
    )


def _interlock(name: str) -> Any:
    """A member of the summary's ``interlocks`` (absent in rows folded before them: NULL,
    which no count or sum takes).  One JSON path, not two lookups: SQLite would read
    the inner object back as a string."""
    return _devices.c.summary[("interlocks", name)]


@dataclass(frozen=True, slots=True)
class Attention:
    """What a clinic should look at now, each the size of a filtered list."""

    open_alerts: int
    """Raised and not yet acknowledged (``/alerts?status=open``)."""
    cartridges_exhausted: int
    """Cartridges at end of life: to replace before the next session."""
    cartridges_low: int
    """Cartridges past the low-life threshold: to replace today or soon."""
    devices_offline: int
    flagged_sessions: int
    """Sessions whose counts did not reconcile or whose chain is broken, up to
    ``FLAGGED_CAP`` (the list says the rest)."""


FLAGGED_CAP: Final = 1000


def clinic_attention(connection: Connection, principal: Principal) -> Attention:
    by_status: dict[str, int] = dict(
        connection.execute(
            select(effective_status, func.count())
            .select_from(_devices.outerjoin(presence, presence.c.device_id == _devices.c.device_id))
            .where(scoped(principal, _devices.c.clinic_id))
            .group_by(effective_status)
        ).all()
    )
    alerts = READ.alerts
    open_alerts = connection.execute(
        select(func.count()).where(scoped(principal, alerts.c.clinic_id), alerts.c.status == "open")
    ).scalar_one()
    flagged = session_query(principal, flagged=True).limit(FLAGGED_CAP).subquery()
    flagged_sessions = connection.execute(select(func.count()).select_from(flagged)).scalar_one()
    return Attention(
        open_alerts=int(open_alerts),
        cartridges_exhausted=int(by_status.get(CARTRIDGE_EXHAUSTED, 0)),
        cartridges_low=int(by_status.get(CARTRIDGE_LOW, 0)),
        devices_offline=int(by_status.get(OFFLINE, 0)),
        flagged_sessions=int(flagged_sessions),
    )
