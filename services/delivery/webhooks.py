"""The clinics' webhooks: register, list, rotate a secret, switch off and on, delete.

A webhook's secret is shown once, when it is created or rotated, and never
stored (see ``signature``); losing it means rotating it.

Registration asks the egress gate where the URL leads and refuses a URL that leads
somewhere no notice may go; every delivery attempt asks again (``http_post``),
since what a name resolves to can change.  A name that does not resolve (yet) is
accepted: nothing can be reached through it now.

Switched off, a webhook gets no new deliveries and its pending ones wait, unsent,
until it is switched on again.  Deleted, it gets nothing ever again: its pending
deliveries are cancelled, and its row stays so the delivery log still names it.
"""

import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import urlsplit

from sqlalchemy import Connection, Engine, exists, func, select, text, update

from schemas.fields import CLINIC_ID_PATTERN
from services.delivery.errors import (
    InvalidWebhookError,
    WebhookLimitError,
    WebhookNotFoundError,
)
from services.delivery.moments import aware
from services.delivery.signature import derive_secret
from services.delivery.tables import TABLES, DeliveryState
from services.egress import EgressGate, Refused

_CLINIC_ID: Final = re.compile(CLINIC_ID_PATTERN)
_MAX_URL_LENGTH: Final = 2000
DEFAULT_LIMIT_PER_CLINIC: Final = 10


@dataclass(frozen=True, slots=True)
class WebhookRules:
    """What registration enforces: where URLs may lead, and how many a clinic has."""

    egress: EgressGate = field(default_factory=EgressGate)
    limit_per_clinic: int = DEFAULT_LIMIT_PER_CLINIC

    def __post_init__(self) -> None:
        if self.limit_per_clinic < 1:
            raise ValueError("a clinic needs room for at least one webhook")


PUBLIC_ONLY: Final = WebhookRules()


@dataclass(frozen=True, slots=True)
class Webhook:
    id: str
    clinic_id: str
    url: str
    secret_version: int
    created_at: datetime
    active: bool


def create_webhook(
    engine: Engine,
    master_key: bytes,
    clinic_id: str,
    url: str,
    rules: WebhookRules = PUBLIC_ONLY,
) -> tuple[str, str]:
    """Register ``url`` for ``clinic_id``'s alert notices; ``(webhook id, secret)``.

    The default ``rules`` admit public addresses only, the usual limit per clinic."""
    _check(clinic_id, url, rules.egress)
    webhook_id = str(uuid.uuid4())
    webhooks = TABLES.webhooks
    with engine.begin() as connection:
        _serialize_registrations(connection, clinic_id)
        connection.execute(
            webhooks.insert().values(
                id=webhook_id, clinic_id=clinic_id, url=url, secret_version=1,
                created_at=datetime.now(UTC), active=True,
            )
        )  # fmt: skip
        # Counted after the insert, inside the transaction: the insert took SQLite's
        # write lock (and PostgreSQL's lock above is held), so no other registration
        # of this clinic can be counted in between.
        count = connection.execute(
            select(func.count()).select_from(webhooks).where(
                webhooks.c.clinic_id == clinic_id, _not_deleted()
            )
        ).scalar_one()  # fmt: skip
        if count > rules.limit_per_clinic:  # raising rolls the insert back
            raise WebhookLimitError(
                f"clinic {clinic_id} already has {count - 1} webhooks, the most it may have "
                f"({rules.limit_per_clinic}): delete one first"
            )
    return webhook_id, derive_secret(master_key, webhook_id, 1)


def rotate_secret(
    engine: Engine, master_key: bytes, webhook_id: str, clinic_id: str | None = None
) -> str:
    """Retire the webhook's secret for a new one, returned this once.

    Attempts made from now on, retries of earlier notices included, are signed with
    the new secret.
    """
    webhooks = TABLES.webhooks
    with engine.begin() as connection:
        version = connection.execute(
            update(webhooks)
            .where(*_live(webhook_id, clinic_id))
            .values(secret_version=webhooks.c.secret_version + 1)
            .returning(webhooks.c.secret_version)
        ).scalar_one_or_none()
    if version is None:
        raise WebhookNotFoundError(f"no webhook {webhook_id!r}")
    return derive_secret(master_key, webhook_id, int(version))


def set_webhook_active(
    engine: Engine, webhook_id: str, *, active: bool, clinic_id: str | None = None
) -> Webhook:
    """Switch a webhook off (its pending deliveries wait, unsent) or on again."""
    webhooks = TABLES.webhooks
    with engine.begin() as connection:
        changed = connection.execute(
            update(webhooks).where(*_live(webhook_id, clinic_id)).values(active=active)
        ).rowcount
    if not changed:
        raise WebhookNotFoundError(f"no webhook {webhook_id!r}")
    return next(hook for hook in list_webhooks(engine, clinic_id) if hook.id == webhook_id)


def delete_webhook(engine: Engine, webhook_id: str, clinic_id: str | None = None) -> int:
    """Delete a webhook for good and cancel its pending deliveries; how many were
    cancelled.  A delivery already on its way finishes its one attempt."""
    webhooks, deliveries = TABLES.webhooks, TABLES.deliveries
    now = datetime.now(UTC)
    with engine.begin() as connection:
        # Switched off too, so every query that looks only at ``active`` (the worker's)
        # already passes it over.
        changed = connection.execute(
            update(webhooks).where(*_live(webhook_id, clinic_id)).values(active=False)
        ).rowcount
        if not changed:
            raise WebhookNotFoundError(f"no webhook {webhook_id!r}")
        connection.execute(TABLES.deletions.insert().values(webhook_id=webhook_id, deleted_at=now))
        cancelled = connection.execute(
            update(deliveries)
            .where(
                deliveries.c.webhook_id == webhook_id,
                deliveries.c.state == DeliveryState.PENDING.value,
            )
            .values(state=DeliveryState.CANCELLED.value, next_attempt_at=None,
                    last_error="webhook deleted")
        ).rowcount  # fmt: skip
    return int(cancelled)


def list_webhooks(engine: Engine, clinic_id: str | None = None) -> list[Webhook]:
    """The webhooks of ``clinic_id`` (of every clinic when ``None``) not deleted,
    oldest first."""
    webhooks = TABLES.webhooks
    query = select(webhooks).where(_not_deleted()).order_by(webhooks.c.created_at, webhooks.c.id)
    if clinic_id is not None:
        query = query.where(webhooks.c.clinic_id == clinic_id)
    with engine.connect() as connection:
        rows = connection.execute(query).mappings().all()
    return [
        Webhook(
            id=row["id"], clinic_id=row["clinic_id"], url=row["url"],
            secret_version=row["secret_version"], created_at=aware(row["created_at"]),
            active=bool(row["active"]),
        )
        for row in rows
    ]  # fmt: skip


def _not_deleted() -> Any:
    deletions = TABLES.deletions
    return ~exists().where(deletions.c.webhook_id == TABLES.webhooks.c.id)


def _live(webhook_id: str, clinic_id: str | None) -> list[Any]:
    webhooks = TABLES.webhooks
    conditions = [webhooks.c.id == webhook_id, _not_deleted()]
    if clinic_id is not None:
        conditions.append(webhooks.c.clinic_id == clinic_id)
    return conditions


def _serialize_registrations(connection: Connection, clinic_id: str) -> None:
    """On PostgreSQL, one registration per clinic at a time until commit, so two
    concurrent ones cannot both find room for one more webhook."""
    if connection.dialect.name == "postgresql":
        connection.execute(
            text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"),
            {"key": f"coreline.webhooks:{clinic_id}"},
        )


def _check(clinic_id: str, url: str, egress: EgressGate) -> None:
    if not _CLINIC_ID.match(clinic_id):
        raise InvalidWebhookError(f"invalid clinic id {clinic_id!r}")
    parts = urlsplit(url)
    if parts.scheme not in {"https", "http"} or not parts.hostname:
        raise InvalidWebhookError(
            f"webhook URL {url!r} must be absolute http:// or https://, "
            "e.g. https://clinic.example/coreline/alerts"
        )
    if len(url) > _MAX_URL_LENGTH:
        raise InvalidWebhookError(f"webhook URL longer than {_MAX_URL_LENGTH} characters")
    if parts.username or parts.password:
        raise InvalidWebhookError("webhook URLs carry no credentials: the signature proves origin")
    verdict = egress.check(url)
    if isinstance(verdict, Refused):
        raise InvalidWebhookError(
            f"webhook URL refused by the egress policy: {verdict.reason}; "
            "webhooks must reach a public address"
        )
