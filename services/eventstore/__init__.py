"""The append-only event store: one port, a SQLite and a PostgreSQL adapter."""

from schemas.urls import redact
from services.eventstore.database_url import Backend, DatabaseUrl
from services.eventstore.errors import (
    DatabaseUnavailableError,
    EventStoreError,
    SchemaMissingError,
    UnsupportedDatabaseUrlError,
)
from services.eventstore.factory import open_event_store, upgrade_schema
from services.eventstore.ports import (
    DEAD_LETTER_RAW_LIMIT,
    AppendResult,
    Cursor,
    DeadLetter,
    EventRecord,
    EventStore,
    Gap,
    NextEvent,
    Presence,
    StoredDeadLetter,
    StoredEvent,
)

__all__ = [
    "DEAD_LETTER_RAW_LIMIT",
    "AppendResult",
    "Backend",
    "Cursor",
    "DatabaseUnavailableError",
    "DatabaseUrl",
    "DeadLetter",
    "EventRecord",
    "EventStore",
    "EventStoreError",
    "Gap",
    "NextEvent",
    "Presence",
    "SchemaMissingError",
    "StoredDeadLetter",
    "StoredEvent",
    "UnsupportedDatabaseUrlError",
    "open_event_store",
    "redact",
    "upgrade_schema",
]
