"""Each database adapter reports its driver's failures as the store's own errors, so a
caller tells "wait and retry" from "set this input aside" without importing a driver."""

import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from schemas import Heartbeat, Rejection, RejectionReason
from services.eventstore import (
    Cursor,
    DeadLetter,
    EventStore,
    StoreRefusedValueError,
    StoreUnavailableError,
    open_event_store,
    upgrade_schema,
)
from tests.support.postgres import free_port
from tests.support.streams import device_stream

NOON = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
TOPIC = "coreline/v1/devices/HP-000001/events"
_BEAT = Heartbeat.model_validate({"device_id": "HP-000001", "sampled_at": "2026-11-24T12:00:00Z"})

CALLS: dict[str, Callable[[EventStore], object]] = {
    "append": lambda store: store.append(device_stream("HP-000001", 1)),
    "append_next": lambda store: store.append_next("registry:HP-000001", lambda head: None),
    "read": lambda store: store.read(Cursor.START),
    "read_records": lambda store: store.read_records(Cursor.START),
    "read_stream": lambda store: store.read_stream("HP-000001"),
    "count_events": lambda store: store.count_events(),
    "stream_ids": lambda store: store.stream_ids(),
    "dead_letters": lambda store: store.dead_letters(),
    "record_heartbeats": lambda store: store.record_heartbeats([_BEAT]),
    "latest_heartbeats": lambda store: store.latest_heartbeats("HP-000001"),
    "newest_heartbeats": lambda store: store.newest_heartbeats(["HP-000001"]),
    "record_presence": lambda store: store.record_presence("HP-000001", online=True, at=NOON),
    "presence": lambda store: store.presence(),
    "find_gaps": lambda store: store.find_gaps("HP-000001"),
    "contiguous_through": lambda store: store.contiguous_through("HP-000001"),
}


@pytest.mark.parametrize("call", CALLS.values(), ids=CALLS.keys())
def test_a_closed_store_is_unavailable(
    store_url: str, call: Callable[[EventStore], object]
) -> None:
    """Every method of a closed store raises ``StoreUnavailableError`` in one line,
    chained to the driver's own error."""
    store = open_event_store(store_url)
    store.close()
    with pytest.raises(StoreUnavailableError) as raised:
        call(store)
    assert "\n" not in str(raised.value)
    assert isinstance(raised.value.__cause__, sqlite3.Error | psycopg.Error)


def test_a_session_the_server_ended_is_unavailable(postgres_url: str) -> None:
    """When PostgreSQL ends the store's session (a restart, a fail-over) the next call
    is ``StoreUnavailableError``: worth retrying on a new connection."""
    store = open_event_store(postgres_url)
    try:
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        with pytest.raises(StoreUnavailableError, match="the database is unavailable"):
            store.count_events()
    finally:
        store.close()


def test_postgres_refuses_a_nul_byte_and_keeps_nothing_of_the_append(postgres_url: str) -> None:
    """A dead letter whose topic holds a NUL byte (no PostgreSQL text can) is
    ``StoreRefusedValueError``; the events beside it are not kept, and the store goes on."""
    store = open_event_store(postgres_url)
    events = device_stream("HP-000001", 2)
    poison = DeadLetter(f"{TOPIC}\x00", Rejection(RejectionReason.MALFORMED, "not JSON", b"{"))
    try:
        with pytest.raises(StoreRefusedValueError, match="refused a value") as raised:
            store.append(events, [poison])
        assert isinstance(raised.value.__cause__, psycopg.DataError)
        assert (store.count_events(), store.dead_letters()) == (0, [])
        assert store.append(events).appended == 2
    finally:
        store.close()


def test_sqlite_refuses_a_null_and_keeps_nothing_of_the_append(sqlite_url: str) -> None:
    """A dead letter without a topic breaks SQLite's NOT NULL: ``StoreRefusedValueError``;
    the events beside it are not kept, and the store goes on."""
    store = open_event_store(sqlite_url)
    events = device_stream("HP-000001", 2)
    # Only a bug upstream could send this; the database's own rule is what refuses it.
    poison = DeadLetter(None, Rejection(RejectionReason.MALFORMED, "no topic", b"{"))  # type: ignore[arg-type]
    try:
        with pytest.raises(StoreRefusedValueError, match="refused a value") as raised:
            store.append(events, [poison])
        assert isinstance(raised.value.__cause__, sqlite3.IntegrityError)
        assert (store.count_events(), store.dead_letters()) == (0, [])
        assert store.append(events).appended == 2
    finally:
        store.close()


def test_an_unreachable_postgres_is_unavailable_to_upgrade_and_open() -> None:
    """Nothing listening: both ``db upgrade`` and opening the store say
    ``StoreUnavailableError``, naming the database without its password."""
    url = f"postgresql://postgres:secret@127.0.0.1:{free_port()}/coreline"
    for attempt in (upgrade_schema, open_event_store):
        with pytest.raises(StoreUnavailableError, match="cannot reach the database") as raised:
            attempt(url)
        assert "secret" not in str(raised.value)


def test_a_sqlite_path_that_cannot_be_opened_is_unavailable(tmp_path: Path) -> None:
    """A path SQLite cannot open (here a directory) is ``StoreUnavailableError`` to
    ``db upgrade`` and to opening the store alike."""
    url = f"sqlite:///{tmp_path}"
    for attempt in (upgrade_schema, open_event_store):
        with pytest.raises(StoreUnavailableError, match="unable to open"):
            attempt(url)
