"""Alert e-mail, the database side: each user's choice of severities, and the e-mail
log (enqueue notices for the users who want them, find what is due, record each
attempt), kept like the webhook delivery log: same states, same retry policy.

Who gets an alert by e-mail: an enabled user who may read alerts (a clinic's staff,
the manufacturer), whose choice includes the alert's severity, and who sees the
alert's clinic (a clinic user only their own clinic's alerts; the manufacturer
every clinic's).
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import Connection, Engine, and_, delete, or_, select, update

from services.delivery.email_tables import EMAIL_TABLES
from services.delivery.enqueue import insert_new, pending
from services.delivery.moments import aware
from services.delivery.notice import AlertNotice
from services.delivery.retry import Delivered, GaveUp, Outcome
from services.delivery.tables import DeliveryState

SEVERITIES: Final = ("info", "warning", "critical")
_READERS: Final = ("manufacturer", "clinic")
"""Roles that may read alerts (``services.api.access``): only they get alert e-mail."""


@dataclass(frozen=True, slots=True)
class DueEmail:
    id: int
    user_id: str
    address: str
    event_id: str
    alert_id: str
    payload: bytes
    attempts: int


@dataclass(frozen=True, slots=True)
class EmailRecord:
    """One row of the e-mail log, as the API shows it (never the address)."""

    user_id: str
    clinic_id: str | None
    """The person's clinic (``None``: the manufacturer's people)."""
    event_id: str
    state: str
    attempts: int
    last_error: str | None
    delivered_at: datetime | None


def email_severities(connection: Connection, user_id: str) -> frozenset[str]:
    """The severities ``user_id`` gets by e-mail (none unless they chose some)."""
    table = EMAIL_TABLES.preferences
    found = connection.execute(
        select(table.c.severities).where(table.c.user_id == user_id)
    ).scalar_one_or_none()
    return frozenset(filter(None, (found or "").split(",")))


def set_email_severities(
    engine: Engine, user_id: str, severities: Iterable[str], now: datetime
) -> frozenset[str]:
    """Store ``user_id``'s choice; ``ValueError`` names a severity that is none."""
    chosen = frozenset(severities)
    unknown = sorted(chosen - set(SEVERITIES))
    if unknown:
        raise ValueError(f"{', '.join(unknown)}: severities are {', '.join(SEVERITIES)}")
    table = EMAIL_TABLES.preferences
    text = ",".join(severity for severity in SEVERITIES if severity in chosen)
    with engine.begin() as connection:
        connection.execute(delete(table).where(table.c.user_id == user_id))
        connection.execute(table.insert().values(user_id=user_id, severities=text, updated_at=now))
    return chosen


def enqueue_emails(connection: Connection, notices: Sequence[AlertNotice], now: datetime) -> int:
    """One pending e-mail per notice and user who wants it, inside the caller's
    transaction; a (user, event) pair already enqueued is left alone.  How many rows
    were new."""
    if not notices:
        return 0
    recipients = _recipients(connection)
    rows = [
        {"user_id": user_id, **pending(notice, now)}
        for notice in notices
        for user_id, clinic_id, severities in recipients
        if notice.severity in severities and clinic_id in (None, notice.clinic_id)
    ]
    return insert_new(connection, EMAIL_TABLES.emails, rows, ["user_id", "event_id"])


def _recipients(connection: Connection) -> list[tuple[str, str | None, frozenset[str]]]:
    preferences = EMAIL_TABLES.preferences
    users = EMAIL_TABLES.users
    rows = connection.execute(
        select(users.c.user_id, users.c.clinic_id, preferences.c.severities)
        .join(preferences, preferences.c.user_id == users.c.user_id)
        .where(
            users.c.disabled.is_(False),
            users.c.role.in_(_READERS),
            preferences.c.severities != "",
        )
    ).all()
    return [(row[0], row[1], frozenset(row[2].split(","))) for row in rows]


def due_emails(engine: Engine, now: datetime, limit: int) -> list[DueEmail]:
    """Pending e-mails due by ``now`` to users still enabled, most overdue first."""
    emails, users = EMAIL_TABLES.emails, EMAIL_TABLES.users
    with engine.connect() as connection:
        rows = connection.execute(
            select(
                emails.c.id, emails.c.user_id, users.c.email, emails.c.event_id,
                emails.c.alert_id, emails.c.payload, emails.c.attempts,
            )
            .join(users, users.c.user_id == emails.c.user_id)
            .where(
                emails.c.state == DeliveryState.PENDING.value,
                users.c.disabled.is_(False),
                or_(emails.c.next_attempt_at.is_(None), emails.c.next_attempt_at <= now),
            )
            .order_by(emails.c.next_attempt_at, emails.c.id)
            .limit(limit)
        ).all()  # fmt: skip
    return [DueEmail(row[0], row[1], row[2], row[3], row[4], row[5].encode(), row[6])
            for row in rows]  # fmt: skip


def next_email_due_at(engine: Engine) -> datetime | None:
    emails = EMAIL_TABLES.emails
    with engine.connect() as connection:
        found = connection.execute(
            select(emails.c.next_attempt_at)
            .where(emails.c.state == DeliveryState.PENDING.value)
            .order_by(emails.c.next_attempt_at)
            .limit(1)
        ).scalar_one_or_none()
    return None if found is None else aware(found)


def claim_email(engine: Engine, email: DueEmail, lease_until: datetime) -> bool:
    """Take the e-mail's next attempt: counted now, due again at ``lease_until``
    should this worker die before recording it.  ``False``: another worker took it."""
    emails = EMAIL_TABLES.emails
    with engine.begin() as connection:
        claimed = connection.execute(
            update(emails)
            .where(and_(emails.c.id == email.id, emails.c.attempts == email.attempts,
                        emails.c.state == DeliveryState.PENDING.value))
            .values(attempts=email.attempts + 1, next_attempt_at=lease_until)
        )  # fmt: skip
    return claimed.rowcount == 1


def record_email_outcome(engine: Engine, email_id: int, outcome: Outcome, now: datetime) -> None:
    emails = EMAIL_TABLES.emails
    values: dict[str, Any]
    if isinstance(outcome, Delivered):
        values = {"state": DeliveryState.DELIVERED.value, "delivered_at": now,
                  "next_attempt_at": None, "last_error": None}  # fmt: skip
    elif isinstance(outcome, GaveUp):
        values = {"state": DeliveryState.FAILED.value, "next_attempt_at": None,
                  "last_error": outcome.error}  # fmt: skip
    else:
        values = {"next_attempt_at": now + timedelta(seconds=outcome.delay_s),
                  "last_error": outcome.error}  # fmt: skip
    with engine.begin() as connection:
        connection.execute(update(emails).where(emails.c.id == email_id).values(**values))


def email_log(connection: Connection, alert_id: str) -> list[EmailRecord]:
    """The e-mails of an alert's notices, oldest first."""
    emails, users = EMAIL_TABLES.emails, EMAIL_TABLES.users
    rows = connection.execute(
        select(emails, users.c.clinic_id)
        .join(users, users.c.user_id == emails.c.user_id)
        .where(emails.c.alert_id == alert_id)
        .order_by(emails.c.id)
    ).mappings()
    return [
        EmailRecord(
            row["user_id"], row["clinic_id"], row["event_id"], row["state"], row["attempts"],
            row["last_error"], None if row["delivered_at"] is None else aware(row["delivered_at"]),
        )
        for row in rows
    ]  # fmt: skip
