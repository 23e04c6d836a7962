"""The tables the API reads: the read models, and the event store's presence table."""

from datetime import UTC, datetime
from typing import Final

from sqlalchemy import Boolean, Column, DateTime, MetaData, Table, Text

from services.projections.tables import read_tables

READ: Final = read_tables()
presence: Final = Table(
    "presence",
    MetaData(),
    Column("device_id", Text, primary_key=True),
    Column("online", Boolean, nullable=False),
    Column("changed_at", DateTime(timezone=True), nullable=False),
)


def aware(moment: datetime | None) -> datetime | None:
    """SQLite hands timestamps back without their zone; every stored one is UTC."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def utc(moment: datetime) -> datetime:
    """A query bound in UTC, so SQLite's text comparison is time comparison."""
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)
