"""Failures of the event store that callers may handle."""


class EventStoreError(Exception):
    """Base of every event-store failure."""


class SchemaMissingError(EventStoreError):
    """The database has no (or an older) Coreline schema: run ``coreline db upgrade``."""


class DatabaseUnavailableError(EventStoreError):
    """The database did not answer (down, unreachable, or refusing these credentials)."""


class UnsupportedDatabaseUrlError(EventStoreError):
    """``CORELINE_DATABASE_URL`` names a database Coreline cannot use."""
