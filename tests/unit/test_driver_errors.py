"""``DriverErrors``: how an adapter turns its driver's exceptions into the store's own."""

import sqlite3

import pytest

from services.eventstore import (
    DatabaseUnavailableError,
    EventStoreError,
    StoreRefusedValueError,
    StoreUnavailableError,
)
from services.eventstore.driver_errors import DriverErrors

SQLITE = DriverErrors(refused=(sqlite3.DataError, sqlite3.IntegrityError), failed=sqlite3.Error)


@SQLITE
def _raise(error: Exception) -> None:
    raise error


@pytest.mark.parametrize(
    ("driver_error", "expected"),
    [
        (sqlite3.IntegrityError("NOT NULL constraint failed: dead_letters.topic"),
         StoreRefusedValueError),
        (sqlite3.DataError("string or blob too big"), StoreRefusedValueError),
        (sqlite3.OperationalError("database is locked"), StoreUnavailableError),
        (sqlite3.ProgrammingError("Cannot operate on a closed database."), StoreUnavailableError),
        (sqlite3.InterfaceError("bad parameter"), StoreUnavailableError),
    ],
)  # fmt: skip
def test_driver_errors_become_the_stores_own(
    driver_error: Exception, expected: type[EventStoreError]
) -> None:
    """Refused values and everything else a driver raises map to the two store errors,
    chained to the original."""
    with pytest.raises(expected) as raised:
        _raise(driver_error)
    assert raised.value.__cause__ is driver_error
    assert type(driver_error).__name__ in str(raised.value)


def test_the_message_is_one_line() -> None:
    """Only the driver's first line is kept: its hints and context lines stay on the cause."""
    with pytest.raises(StoreUnavailableError) as raised:
        _raise(sqlite3.OperationalError("disk I/O error\nHINT: check the volume"))
    assert str(raised.value) == "the database is unavailable: OperationalError: disk I/O error"


def test_other_exceptions_pass_through() -> None:
    """What is not the driver's (a bug, a caller's own exception) is not reclassified."""
    with pytest.raises(KeyError):
        _raise(KeyError("stream"))


def test_the_old_name_still_catches_unavailability() -> None:
    """Callers that catch ``DatabaseUnavailableError`` keep working."""
    with pytest.raises(DatabaseUnavailableError):
        _raise(sqlite3.OperationalError("database is locked"))
