"""The webhook registry and the webhook delivery log, one definition for SQLite and
PostgreSQL.

Unlike the read models these are not derived from events: a webhook is operator
configuration and the log is the record of what was sent, so a replay never
touches them, and ``coreline db upgrade`` makes them (the PostgreSQL migrations and
the SQLite schema; ``tests/integration/test_migrations.py`` holds those to these
definitions).  Secrets are not here at all (see ``signature``).
"""

from enum import StrEnum
from typing import Final, NamedTuple

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    UniqueConstraint,
)

_MOMENT: Final = DateTime(timezone=True)
_ROW_ID: Final = BigInteger().with_variant(Integer(), "sqlite")
"""SQLite numbers rows itself only for an ``INTEGER PRIMARY KEY``."""


class DeliveryState(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"
    CANCELLED = "cancelled"
    """Its webhook was deleted before it went out."""


class DeliveryTables(NamedTuple):
    metadata: MetaData
    webhooks: Table
    deliveries: Table
    deletions: Table


def delivery_tables() -> DeliveryTables:
    metadata = MetaData()
    webhooks = Table(
        "webhooks",
        metadata,
        Column("id", Text, primary_key=True),
        Column("clinic_id", Text, nullable=False),
        Column("url", Text, nullable=False),
        Column("secret_version", Integer, nullable=False),
        Column("created_at", _MOMENT, nullable=False),
        Column("active", Boolean, nullable=False),
        Index("webhooks_clinic_active", "clinic_id", "active"),
    )
    deliveries = Table(
        "webhook_deliveries",
        metadata,
        Column("id", _ROW_ID, primary_key=True, autoincrement=True),
        Column("webhook_id", Text, ForeignKey("webhooks.id"), nullable=False),
        Column("event_id", Text, nullable=False),
        Column("alert_id", Text, nullable=False),
        # The exact bytes every attempt sends, so retries are signed over the same body.
        Column("payload", Text, nullable=False),
        Column("attempts", Integer, nullable=False),
        Column("state", Text, nullable=False),
        Column("last_status", Integer),
        Column("last_error", Text),
        Column("next_attempt_at", _MOMENT),
        Column("delivered_at", _MOMENT),
        Column("created_at", _MOMENT, nullable=False),
        # Enqueueing a batch twice (a crash before its checkpoint moved) adds nothing.
        UniqueConstraint("webhook_id", "event_id", name="webhook_deliveries_once"),
        Index("webhook_deliveries_due", "state", "next_attempt_at"),
        Index("webhook_deliveries_event", "event_id"),
    )
    # A deleted webhook keeps its row, so its delivery log still names it; deletion is
    # a row of its own rather than a column because SQLite cannot add a column "if
    # not exists", and two processes may run the same schema upgrade at once.
    deletions = Table(
        "webhook_deletions",
        metadata,
        Column("webhook_id", Text, ForeignKey("webhooks.id"), primary_key=True),
        Column("deleted_at", _MOMENT, nullable=False),
    )
    return DeliveryTables(metadata, webhooks, deliveries, deletions)


TABLES: Final = delivery_tables()
