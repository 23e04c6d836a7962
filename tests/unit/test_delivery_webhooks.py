"""The webhook registry: secrets shown once and never stored, rotation, listing."""

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy
from sqlalchemy import Engine

from services.delivery import (
    InvalidWebhookError,
    WebhookNotFoundError,
    create_webhook,
    derive_secret,
    list_webhooks,
    rotate_secret,
    set_webhook_active,
)
from services.delivery.tables import TABLES
from services.eventstore import upgrade_schema

MASTER_KEY = b"m" * 32


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    """A fresh SQLite database, its tables made by ``db upgrade``."""
    url = f"sqlite:///{tmp_path / 'delivery.db'}"
    upgrade_schema(url)
    created = sqlalchemy.create_engine(url)
    yield created
    created.dispose()


def test_created_webhooks_are_listed_per_clinic_without_secrets(engine: Engine) -> None:
    """A clinic lists its own webhooks; the secret is derived, not stored anywhere."""
    first, secret = create_webhook(engine, MASTER_KEY, "clinic-a", "https://a.example/hook")
    create_webhook(engine, MASTER_KEY, "clinic-b", "https://b.example/hook")
    (listed,) = list_webhooks(engine, "clinic-a")
    assert (listed.id, listed.url, listed.secret_version, listed.active) == (
        first, "https://a.example/hook", 1, True,
    )  # fmt: skip
    assert secret == derive_secret(MASTER_KEY, first, 1)
    assert len(list_webhooks(engine)) == 2
    with engine.connect() as connection:
        stored = connection.execute(sqlalchemy.select(TABLES.webhooks)).all()
    assert all(secret not in str(row) for row in stored)


def test_rotation_bumps_the_version_and_returns_the_new_secret(engine: Engine) -> None:
    """Each rotation gives a new secret, derived from the next version."""
    webhook_id, first = create_webhook(engine, MASTER_KEY, "clinic-a", "https://a.example/h")
    second = rotate_secret(engine, MASTER_KEY, webhook_id)
    third = rotate_secret(engine, MASTER_KEY, webhook_id)
    assert len({first, second, third}) == 3
    assert third == derive_secret(MASTER_KEY, webhook_id, 3)
    assert list_webhooks(engine, "clinic-a")[0].secret_version == 3


def test_unknown_webhooks_are_reported(engine: Engine) -> None:
    """Rotating or switching off a webhook that does not exist says so."""
    with pytest.raises(WebhookNotFoundError):
        rotate_secret(engine, MASTER_KEY, "nope")
    with pytest.raises(WebhookNotFoundError):
        set_webhook_active(engine, "nope", active=False)


@pytest.mark.parametrize(
    ("clinic_id", "url"),
    [
        ("clinic-a", "ftp://a.example/hook"),
        ("clinic-a", "/relative/hook"),
        ("clinic-a", "https://user:pw@a.example/hook"),
        ("clinic a", "https://a.example/hook"),
    ],
)
def test_unusable_webhooks_are_refused(engine: Engine, clinic_id: str, url: str) -> None:
    """Only absolute http(s) URLs without credentials, for a valid clinic id."""
    with pytest.raises(InvalidWebhookError):
        create_webhook(engine, MASTER_KEY, clinic_id, url)
