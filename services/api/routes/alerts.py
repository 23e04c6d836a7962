"""Alerts: list, detail, acknowledge, resolve."""

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, status

from schemas.fields import DEVICE_ID_PATTERN
from services.api import commands
from services.api.access import Principal
from services.api.deps import AlertHandler, AlertReader, Db, Store
from services.api.models import Accepted, AlertNote, AlertOut, DeliveryOut
from services.api.pagination import (
    CursorParam,
    Limit,
    Page,
    decode_time_cursor,
    next_cursor,
    time_key,
)
from services.api.problems import ERROR_RESPONSES, not_found
from services.api.queries import alerts as queries

router = APIRouter(prefix="/alerts", tags=["alerts"], responses=ERROR_RESPONSES)
AlertPath = Annotated[str, Path(pattern=r"^[0-9a-f-]{36}$")]


@router.get("", summary="List alerts")
def list_alerts(
    who: AlertReader,
    db: Db,
    status: Literal["open", "acknowledged", "resolved"] | None = None,
    severity: Literal["info", "warning", "critical"] | None = None,
    device_id: Annotated[str | None, Query(pattern=DEVICE_ID_PATTERN)] = None,
    cursor: CursorParam = None,
    limit: Limit = 100,
) -> Page[AlertOut]:
    """Alerts, newest first."""
    key = decode_time_cursor(cursor)
    rows = queries.list_alerts(
        db, who, status=status, severity=severity, device_id=device_id, after=key, limit=limit
    )
    return Page(
        items=rows[:limit],
        next_cursor=next_cursor(rows, limit, lambda row: time_key(row.raised_at, row.alert_id)),
    )


@router.get("/{alert_id}", summary="An alert")
def get_alert(who: AlertReader, db: Db, alert_id: AlertPath) -> AlertOut:
    return _find(who, db, alert_id)


@router.get("/{alert_id}/deliveries", summary="An alert's webhook deliveries")
def get_deliveries(who: AlertReader, db: Db, alert_id: AlertPath) -> list[DeliveryOut]:
    """Each notice of the alert to each of its clinic's webhooks, with its attempts."""
    _find(who, db, alert_id)
    return queries.deliveries(db, alert_id)


@router.post("/{alert_id}/acknowledge", status_code=status.HTTP_202_ACCEPTED, summary="Acknowledge")
def acknowledge(
    who: AlertHandler, db: Db, store: Store, alert_id: AlertPath, body: AlertNote | None = None
) -> Accepted:
    """Someone is on it.  409 when the alert is acknowledged or resolved already."""
    alert = _find(who, db, alert_id)
    note = None if body is None else body.note
    return commands.move_alert(
        store, alert_id, alert.device_id, "alert.acknowledged", note, who.author
    )


@router.post("/{alert_id}/resolve", status_code=status.HTTP_202_ACCEPTED, summary="Resolve")
def resolve(
    who: AlertHandler, db: Db, store: Store, alert_id: AlertPath, body: AlertNote | None = None
) -> Accepted:
    """Closed, with a note of what was done.  409 when it is resolved already."""
    alert = _find(who, db, alert_id)
    note = None if body is None else body.note
    return commands.move_alert(store, alert_id, alert.device_id, "alert.resolved", note, who.author)


def _find(who: Principal, db: Db, alert_id: str) -> AlertOut:
    found = queries.find_alert(db, who, alert_id)
    if found is None:
        raise not_found("alert")
    return found
