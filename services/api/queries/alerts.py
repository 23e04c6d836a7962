"""Alerts as a principal may see them, newest first."""

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, select, tuple_

from services.api.access import Principal
from services.api.models import AlertOut, DeliveryOut
from services.api.queries.scope import scoped
from services.api.queries.tables import READ, aware, utc
from services.delivery.tables import TABLES

_alerts = READ.alerts


def list_alerts(
    connection: Connection,
    principal: Principal,
    *,
    status: str | None,
    severity: str | None,
    device_id: str | None,
    after: tuple[datetime, str] | None,
    limit: int,
) -> list[AlertOut]:
    query = select(_alerts).where(scoped(principal, _alerts.c.clinic_id))
    if status is not None:
        query = query.where(_alerts.c.status == status)
    if severity is not None:
        query = query.where(_alerts.c.severity == severity)
    if device_id is not None:
        query = query.where(_alerts.c.device_id == device_id)
    if after is not None:
        raised_at, alert_id = after
        query = query.where(
            tuple_(_alerts.c.raised_at, _alerts.c.alert_id) < (utc(raised_at), alert_id)
        )
    query = query.order_by(_alerts.c.raised_at.desc(), _alerts.c.alert_id.desc()).limit(limit + 1)
    return [alert_out(row) for row in connection.execute(query)]


def find_alert(connection: Connection, principal: Principal, alert_id: str) -> AlertOut | None:
    row = connection.execute(
        select(_alerts).where(
            _alerts.c.alert_id == alert_id, scoped(principal, _alerts.c.clinic_id)
        )
    ).first()
    return None if row is None else alert_out(row)


def count_open_alerts(connection: Connection, principal: Principal) -> int:
    query = select(func.count()).where(
        scoped(principal, _alerts.c.clinic_id), _alerts.c.status != "resolved"
    )
    return int(connection.execute(query).scalar_one())


def alert_out(row: Any) -> AlertOut:
    return AlertOut(
        alert_id=row.alert_id,
        device_id=row.device_id,
        clinic_id=row.clinic_id,
        rule=row.rule,
        subject=row.subject,
        severity=row.severity,
        status=row.status,
        message=row.message,
        context=row.context,
        raised_at=aware(row.raised_at),
        acknowledged_at=aware(row.acknowledged_at),
        acknowledged_by=row.acknowledged_by,
        resolved_at=aware(row.resolved_at),
        resolved_by=row.resolved_by,
        note=row.note,
    )


def deliveries(connection: Connection, alert_id: str) -> list[DeliveryOut]:
    """The webhook deliveries of an alert's notices, oldest first."""
    table = TABLES.deliveries
    rows = connection.execute(
        select(table).where(table.c.alert_id == alert_id).order_by(table.c.id)
    ).mappings()
    return [
        DeliveryOut(
            webhook_id=row["webhook_id"], event_id=row["event_id"], state=row["state"],
            attempts=row["attempts"], last_status=row["last_status"],
            last_error=row["last_error"], delivered_at=aware(row["delivered_at"]),
        )
        for row in rows
    ]  # fmt: skip
