"""Failures of the event store that callers may handle.

Adapters raise these, never their driver's exceptions, so a caller decides between
"wait and retry" and "set this input aside" without knowing which database it has.
"""


class EventStoreError(Exception):
    """Base of every event-store failure."""


class SchemaMissingError(EventStoreError):
    """The database has no (or an older) Coreline schema: run ``coreline db upgrade``."""


class StoreUnavailableError(EventStoreError):
    """The database is away, busy, locked or lost the connection: retrying later may work."""


DatabaseUnavailableError = StoreUnavailableError
"""The name this failure had first; the same class, so either name catches it."""


class StoreRefusedValueError(EventStoreError):
    """The database refused a value (a driver's data or integrity error): the same input
    will be refused again, however often it is retried."""


class UnsupportedDatabaseUrlError(EventStoreError):
    """``CORELINE_DATABASE_URL`` names a database Coreline cannot use."""
