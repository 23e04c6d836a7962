"""The clinics' webhooks: register, list, rotate a secret, switch off.

A webhook's secret is shown once, when it is created or rotated, and never
stored (see ``signature``); losing it means rotating it.
"""

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final
from urllib.parse import urlsplit

from sqlalchemy import Engine, select, update

from schemas.fields import CLINIC_ID_PATTERN
from services.delivery.errors import InvalidWebhookError, WebhookNotFoundError
from services.delivery.moments import aware
from services.delivery.signature import derive_secret
from services.delivery.tables import TABLES

_CLINIC_ID: Final = re.compile(CLINIC_ID_PATTERN)
_MAX_URL_LENGTH: Final = 2000


@dataclass(frozen=True, slots=True)
class Webhook:
    id: str
    clinic_id: str
    url: str
    secret_version: int
    created_at: datetime
    active: bool


def create_webhook(engine: Engine, master_key: bytes, clinic_id: str, url: str) -> tuple[str, str]:
    """Register ``url`` for ``clinic_id``'s alert notices; ``(webhook id, secret)``."""
    _check(clinic_id, url)
    webhook_id = str(uuid.uuid4())
    with engine.begin() as connection:
        connection.execute(
            TABLES.webhooks.insert().values(
                id=webhook_id, clinic_id=clinic_id, url=url, secret_version=1,
                created_at=datetime.now(UTC), active=True,
            )
        )  # fmt: skip
    return webhook_id, derive_secret(master_key, webhook_id, 1)


def rotate_secret(engine: Engine, master_key: bytes, webhook_id: str) -> str:
    """Retire the webhook's secret for a new one, returned this once.

    Attempts made from now on, retries of earlier notices included, are signed with
    the new secret.
    """
    webhooks = TABLES.webhooks
    with engine.begin() as connection:
        version = connection.execute(
            update(webhooks)
            .where(webhooks.c.id == webhook_id)
            .values(secret_version=webhooks.c.secret_version + 1)
            .returning(webhooks.c.secret_version)
        ).scalar_one_or_none()
    if version is None:
        raise WebhookNotFoundError(f"no webhook {webhook_id!r}")
    return derive_secret(master_key, webhook_id, int(version))


def set_webhook_active(engine: Engine, webhook_id: str, *, active: bool) -> None:
    """Switch a webhook off (its pending deliveries wait, unsent) or on again."""
    webhooks = TABLES.webhooks
    with engine.begin() as connection:
        changed = connection.execute(
            update(webhooks).where(webhooks.c.id == webhook_id).values(active=active)
        ).rowcount
    if not changed:
        raise WebhookNotFoundError(f"no webhook {webhook_id!r}")


def list_webhooks(engine: Engine, clinic_id: str | None = None) -> list[Webhook]:
    """The webhooks of ``clinic_id`` (of every clinic when ``None``), oldest first."""
    webhooks = TABLES.webhooks
    query = select(webhooks).order_by(webhooks.c.created_at, webhooks.c.id)
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


def _check(clinic_id: str, url: str) -> None:
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
