"""The append-only event store: small ports, and an in-memory, a SQLite and a PostgreSQL
adapter that all pass the same contract tests."""

from schemas.urls import redact
from services.eventstore.checkpoints import load_checkpoint, save_checkpoint
from services.eventstore.database_url import Backend, DatabaseUrl
from services.eventstore.errors import (
    DatabaseUnavailableError,
    EventStoreError,
    SchemaMissingError,
    StoreRefusedValueError,
    StoreUnavailableError,
    UnsupportedDatabaseUrlError,
)
from services.eventstore.factory import open_event_store, upgrade_schema
from services.eventstore.keyrings import load_keyring
from services.eventstore.memory import InMemoryEventStore
from services.eventstore.ports import (
    DEAD_LETTER_RAW_LIMIT,
    AppendResult,
    Cursor,
    DeadLetter,
    DeadLetters,
    EventLog,
    EventRecord,
    EventStore,
    Gap,
    NextEvent,
    Presence,
    Seals,
    StoredDeadLetter,
    StoredEvent,
    StoredSeal,
    StreamGaps,
    StreamHead,
    StreamSeal,
    Telemetry,
)
from services.eventstore.sql_engine import open_sql_engine

__all__ = [
    "DEAD_LETTER_RAW_LIMIT",
    "AppendResult",
    "Backend",
    "Cursor",
    "DatabaseUnavailableError",
    "DatabaseUrl",
    "DeadLetter",
    "DeadLetters",
    "EventLog",
    "EventRecord",
    "EventStore",
    "EventStoreError",
    "Gap",
    "InMemoryEventStore",
    "NextEvent",
    "Presence",
    "SchemaMissingError",
    "Seals",
    "StoreRefusedValueError",
    "StoreUnavailableError",
    "StoredDeadLetter",
    "StoredEvent",
    "StoredSeal",
    "StreamGaps",
    "StreamHead",
    "StreamSeal",
    "Telemetry",
    "UnsupportedDatabaseUrlError",
    "load_checkpoint",
    "load_keyring",
    "open_event_store",
    "open_sql_engine",
    "redact",
    "save_checkpoint",
    "upgrade_schema",
]
