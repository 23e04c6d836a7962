"""The webhook delivery log: enqueue notices, find what is due, claim an attempt,
record how it went.

Every attempt is claimed before it is made: the claim counts the attempt and leases
the row until the attempt must have ended.  A worker that dies mid-attempt thus
still used up an attempt (the bound holds through crashes), and its row comes due
again when the lease runs out.  Claims and records are conditional on the attempt
count the worker saw, so two workers never make the same attempt, and a worker
that outlived its lease cannot overwrite a later attempt's result.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, and_, exists, func, select, update

from services.delivery.enqueue import insert_new, pending
from services.delivery.moments import aware
from services.delivery.notice import AlertNotice
from services.delivery.retry import Delivered, GaveUp, Outcome, RetryLater
from services.delivery.tables import TABLES, DeliveryState


@dataclass(frozen=True, slots=True)
class DueDelivery:
    """A pending delivery whose next attempt is due, with what sending it needs."""

    id: int
    webhook_id: str
    url: str
    secret_version: int
    event_id: str
    payload: bytes
    attempts: int
    """Attempts made so far."""


@dataclass(frozen=True, slots=True)
class DeliveryRecord:
    id: int
    webhook_id: str
    event_id: str
    alert_id: str
    attempts: int
    state: DeliveryState
    last_status: int | None
    last_error: str | None
    next_attempt_at: datetime | None
    delivered_at: datetime | None
    created_at: datetime


def enqueue_deliveries(
    connection: Connection, notices: Sequence[AlertNotice], now: datetime
) -> int:
    """One pending delivery per notice and active webhook of its clinic, inside the
    caller's transaction; a (webhook, event) pair already enqueued is left alone.
    How many rows were new."""
    clinics = {notice.clinic_id for notice in notices if notice.clinic_id is not None}
    if not clinics:
        return 0
    webhooks = TABLES.webhooks
    found = connection.execute(
        select(webhooks.c.id, webhooks.c.clinic_id).where(
            webhooks.c.clinic_id.in_(sorted(clinics)), webhooks.c.active.is_(True)
        )
    ).all()
    hooks_of: dict[str, list[str]] = {}
    for webhook_id, clinic_id in found:
        hooks_of.setdefault(clinic_id, []).append(webhook_id)
    rows = [
        {"webhook_id": webhook_id, **pending(notice, now)}
        for notice in notices
        for webhook_id in hooks_of.get(notice.clinic_id or "", [])
    ]
    return insert_new(connection, TABLES.deliveries, rows, ["webhook_id", "event_id"])


def due_deliveries(engine: Engine, now: datetime, limit: int) -> list[DueDelivery]:
    """Pending deliveries of active webhooks due by ``now``, most overdue first."""
    deliveries, webhooks = TABLES.deliveries, TABLES.webhooks
    query = (
        select(
            deliveries.c.id, deliveries.c.webhook_id, webhooks.c.url, webhooks.c.secret_version,
            deliveries.c.event_id, deliveries.c.payload, deliveries.c.attempts,
        )
        .join(webhooks, webhooks.c.id == deliveries.c.webhook_id)
        .where(
            deliveries.c.state == DeliveryState.PENDING.value,
            deliveries.c.next_attempt_at <= now,
            webhooks.c.active.is_(True),
        )
        .order_by(deliveries.c.next_attempt_at, deliveries.c.id)
        .limit(limit)
    )  # fmt: skip
    with engine.connect() as connection:
        rows = connection.execute(query).all()
    return [
        DueDelivery(row[0], row[1], row[2], row[3], row[4], row[5].encode(), row[6]) for row in rows
    ]


def next_due_at(engine: Engine) -> datetime | None:
    """When the earliest pending delivery of an active webhook comes due (``None``:
    nothing pending)."""
    deliveries, webhooks = TABLES.deliveries, TABLES.webhooks
    with engine.connect() as connection:
        earliest = connection.execute(
            select(func.min(deliveries.c.next_attempt_at))
            .join(webhooks, webhooks.c.id == deliveries.c.webhook_id)
            .where(deliveries.c.state == DeliveryState.PENDING.value, webhooks.c.active.is_(True))
        ).scalar_one_or_none()
    return aware(earliest) if earliest is not None else None


def claim_attempt(engine: Engine, delivery: DueDelivery, lease_until: datetime) -> bool:
    """Count one more attempt and lease the row; ``False`` if another worker got it,
    or its webhook was switched off or deleted since it was found due."""
    webhooks = TABLES.webhooks
    still_active = exists().where(webhooks.c.id == delivery.webhook_id, webhooks.c.active.is_(True))
    with engine.begin() as connection:
        claimed = connection.execute(
            _unchanged_since(delivery.id, delivery.attempts)
            .where(still_active)
            .values(attempts=delivery.attempts + 1, next_attempt_at=lease_until)
        ).rowcount
    return claimed == 1


def record_outcome(
    engine: Engine, delivery_id: int, attempts: int, outcome: Outcome, now: datetime
) -> None:
    """Store how attempt number ``attempts`` went."""
    values: dict[str, Any]
    if isinstance(outcome, Delivered):
        values = {"state": DeliveryState.DELIVERED.value, "last_status": outcome.status,
                  "last_error": None, "next_attempt_at": None, "delivered_at": now}  # fmt: skip
    elif isinstance(outcome, RetryLater):
        values = {"last_status": outcome.status, "last_error": outcome.error,
                  "next_attempt_at": now + timedelta(seconds=outcome.delay_s)}  # fmt: skip
    else:
        values = _failed(outcome)
    with engine.begin() as connection:
        connection.execute(_unchanged_since(delivery_id, attempts).values(**values))


def give_up(engine: Engine, delivery: DueDelivery, reason: str) -> None:
    """Mark a delivery failed without another attempt (its attempts are used up)."""
    with engine.begin() as connection:
        connection.execute(
            _unchanged_since(delivery.id, delivery.attempts).values(**_failed(GaveUp(None, reason)))
        )


def delivery_log(
    engine: Engine,
    *,
    webhook_id: str | None = None,
    event_id: str | None = None,
    limit: int = 100,
) -> list[DeliveryRecord]:
    """Deliveries, newest first, optionally of one webhook or one notice."""
    deliveries = TABLES.deliveries
    query = select(deliveries).order_by(deliveries.c.id.desc()).limit(limit)
    if webhook_id is not None:
        query = query.where(deliveries.c.webhook_id == webhook_id)
    if event_id is not None:
        query = query.where(deliveries.c.event_id == event_id)
    with engine.connect() as connection:
        rows = connection.execute(query).mappings().all()
    return [
        DeliveryRecord(
            id=row["id"], webhook_id=row["webhook_id"], event_id=row["event_id"],
            alert_id=row["alert_id"], attempts=row["attempts"],
            state=DeliveryState(row["state"]), last_status=row["last_status"],
            last_error=row["last_error"], next_attempt_at=_maybe_aware(row["next_attempt_at"]),
            delivered_at=_maybe_aware(row["delivered_at"]), created_at=aware(row["created_at"]),
        )
        for row in rows
    ]  # fmt: skip


def _failed(outcome: GaveUp) -> dict[str, Any]:
    return {"state": DeliveryState.FAILED.value, "last_status": outcome.status,
            "last_error": outcome.error, "next_attempt_at": None}  # fmt: skip


def _unchanged_since(delivery_id: int, attempts: int) -> Any:
    deliveries = TABLES.deliveries
    return update(deliveries).where(
        and_(
            deliveries.c.id == delivery_id,
            deliveries.c.attempts == attempts,
            deliveries.c.state == DeliveryState.PENDING.value,
        )
    )


def _maybe_aware(moment: datetime | None) -> datetime | None:
    return aware(moment) if moment is not None else None
