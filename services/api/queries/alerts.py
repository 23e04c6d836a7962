"""Alerts as a principal may see them, newest first."""

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, or_, select, tuple_

from services.api.access import Principal
from services.api.models import AlertDetail, AlertOut, AlertStep, DeliveryOut
from services.api.queries.scope import scoped
from services.api.queries.search import prefix_of
from services.api.queries.tables import READ, aware, utc
from services.delivery.tables import TABLES

_alerts = READ.alerts
_history = READ.alert_history


def list_alerts(  # noqa: PLR0913 - the list's filters, each a keyword
    connection: Connection,
    principal: Principal,
    *,
    status: str | None,
    severity: str | None,
    device_id: str | None,
    after: tuple[datetime, str] | None,
    limit: int,
    rule: str | None = None,
    q: str | None = None,
) -> list[AlertOut]:
    """``q``: alerts whose id (lower case) or device id (upper case) starts with it, or
    whose subject (a cartridge, a fault code, a session) is exactly it."""
    query = select(_alerts).where(scoped(principal, _alerts.c.clinic_id))
    if rule is not None:
        query = query.where(_alerts.c.rule == rule)
    if q:
        query = query.where(
            or_(
                prefix_of(_alerts.c.alert_id, q.lower()),
                prefix_of(_alerts.c.device_id, q.upper()),
                _alerts.c.subject == q,
            )
        )
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


def alert_detail(connection: Connection, principal: Principal, alert_id: str) -> AlertDetail | None:
    """The alert with its history, oldest step first (ties: stream order)."""
    alert = find_alert(connection, principal, alert_id)
    if alert is None:
        return None
    rows = connection.execute(
        select(_history)
        .where(_history.c.alert_id == alert_id)
        .order_by(_history.c.at, _history.c.from_alert_id, _history.c.seq)
    )
    history = [
        AlertStep(
            kind=row.kind, at=aware(row.at) or row.at, device_time=aware(row.device_time),
            rule=row.rule, severity=row.severity, by=row.by, note=row.note,
            from_alert_id=row.from_alert_id,
        )
        for row in rows
    ]  # fmt: skip
    return AlertDetail(**alert.model_dump(), history=history)


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
        device_time=aware(row.device_time),
        escalated_at=aware(row.escalated_at),
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
