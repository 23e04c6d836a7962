"""The tables the API reads: the read models, and of the event store's tables presence,
the columns of events that evidence needs, and device seals."""

from datetime import UTC, datetime
from typing import Final

from sqlalchemy import (
    BigInteger,
    BindParameter,
    Boolean,
    Column,
    DateTime,
    Integer,
    LargeBinary,
    MetaData,
    Table,
    Text,
    literal,
)

from services.projections.tables import read_tables

READ: Final = read_tables()
presence: Final = Table(
    "presence",
    MetaData(),
    Column("device_id", Text, primary_key=True),
    Column("online", Boolean, nullable=False),
    Column("changed_at", DateTime(timezone=True), nullable=False),
)
_STORE: Final = MetaData()
stored_events: Final = Table(
    "events",
    _STORE,
    Column("stream_id", Text, primary_key=True),
    Column("seq", BigInteger, primary_key=True),
    Column("type", Text, nullable=False),
    Column("hash", Text, nullable=False),
    Column("body", LargeBinary, nullable=False),
)
"""Read for the hashes and cartridges of session exports, a chunk of sessions at a
time, where reading each session's stream through the store would be a query each."""
seals: Final = Table(
    "seals",
    _STORE,
    Column("stream_id", Text, primary_key=True),
    Column("seq", BigInteger, primary_key=True),
    Column("key_id", Text, nullable=False),
)
"""Device seals (DESIGN §4.1), one per sealed batch at its last seq; a store migrated
before seals existed has no such table (``queries.evidence.seals_kept``)."""


def aware(moment: datetime | None) -> datetime | None:
    """SQLite hands timestamps back without their zone; every stored one is UTC."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def utc(moment: datetime) -> datetime:
    """A query bound in UTC, so SQLite's text comparison is time comparison."""
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)


def written(count: int) -> BindParameter[int]:
    """A ``LIMIT`` or ``OFFSET`` written into the statement, not sent as a parameter.

    The driver prepares a statement run often, and PostgreSQL then plans it once for
    any parameters: not knowing a page's size, it planned for a tenth of the table,
    and a page of one clinic's devices walked every device in id order (11 ms instead
    of 0.6, BENCHMARKS.md, API).  A page size is one of a few values, so each is a
    statement of its own, planned for what it asks."""
    return literal(count, Integer, literal_execute=True)
