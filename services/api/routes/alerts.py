"""Alerts: list, detail, acknowledge, resolve."""

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Response, status

from schemas.fields import DEVICE_ID_PATTERN
from schemas.platform_events import AlertRule
from services.api import commands
from services.api.access import Principal
from services.api.deps import AlertHandler, AlertReader, Db, Store
from services.api.models import (
    Accepted,
    AlertDetail,
    AlertNote,
    AlertOut,
    DeliveryOut,
    EmailDeliveryOut,
)
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
from services.api.responses import json_body
from services.delivery import email_log

router = APIRouter(prefix="/alerts", tags=["alerts"], responses=ERROR_RESPONSES)
AlertPath = Annotated[str, Path(pattern=r"^[0-9a-f-]{36}$")]


@router.get("", summary="List alerts", response_model=Page[AlertOut])
def list_alerts(  # noqa: PLR0913, PLR0917 - one query parameter each
    who: AlertReader,
    db: Db,
    status: Literal["open", "acknowledged", "resolved"] | None = None,
    severity: Literal["info", "warning", "critical"] | None = None,
    device_id: Annotated[str | None, Query(pattern=DEVICE_ID_PATTERN)] = None,
    rule: AlertRule | None = None,
    q: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=64,
            pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$",
            description="Search: the start of the alert id or device id, or the exact "
            "subject (a cartridge, fault code or session).",
        ),
    ] = None,
    cursor: CursorParam = None,
    limit: Limit = 100,
) -> Response:
    """Alerts, newest first."""
    key = decode_time_cursor(cursor)
    rows = queries.list_alerts(
        db, who, status=status, severity=severity, device_id=device_id, after=key,
        limit=limit, rule=rule, q=q,
    )  # fmt: skip
    following = next_cursor(rows, limit, lambda row: time_key(row.raised_at, row.alert_id))
    return json_body(Page(items=rows[:limit], next_cursor=following))


@router.get("/{alert_id}", summary="An alert, with its history")
def get_alert(who: AlertReader, db: Db, alert_id: AlertPath) -> AlertDetail:
    """The alert as it stands, and each step of its history: its raise, every rung of
    the needle-life ladder it climbed, acknowledgements, its resolution.  Times are the
    platform's receive times; ``device_time`` is the device's, where it differs."""
    found = queries.alert_detail(db, who, alert_id)
    if found is None:
        raise not_found("alert")
    return found


@router.get("/{alert_id}/deliveries", summary="An alert's webhook deliveries")
def get_deliveries(who: AlertReader, db: Db, alert_id: AlertPath) -> list[DeliveryOut]:
    """Each notice of the alert to each of its clinic's webhooks, with its attempts."""
    _find(who, db, alert_id)
    return queries.deliveries(db, alert_id)


@router.get("/{alert_id}/emails", summary="An alert's e-mails")
def get_emails(who: AlertReader, db: Db, alert_id: AlertPath) -> list[EmailDeliveryOut]:
    """Each notice of the alert e-mailed to each person who chose it, with its
    attempts (the e-mail log; docs/alerts.md).  A clinic sees its own people's only."""
    _find(who, db, alert_id)
    return [
        EmailDeliveryOut(
            user_id=entry.user_id, event_id=entry.event_id, state=entry.state,
            attempts=entry.attempts, last_error=entry.last_error,
            delivered_at=entry.delivered_at,
        )
        for entry in email_log(db, alert_id)
        if who.clinic_id is None or entry.clinic_id == who.clinic_id
    ]  # fmt: skip


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
