"""The PostgreSQL store follows the database by itself: a session the server ended
(a restart, a failover) fails one call and the next reconnects, a LISTEN that was
lost is taken up again, and a URL naming several hosts reaches the one that takes
writes, in the store, the read models, the log and the migrations alike."""

import threading
import time

import psycopg
import pytest

from services.eventstore import (
    StoreUnavailableError,
    open_event_store,
    upgrade_schema,
)
from services.merkle_log import MerkleLog
from services.projections.read_store import ReadModelStore
from tests.support.postgres import free_port
from tests.support.streams import device_stream


def _end_other_sessions(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )


def test_the_call_after_a_lost_session_reconnects(postgres_url: str) -> None:
    """One call reports the loss (its outcome was unknown); the next one works."""
    store = open_event_store(postgres_url)
    try:
        store.append(device_stream("HP-000001", 2))
        _end_other_sessions(postgres_url)
        with pytest.raises(StoreUnavailableError):
            store.count_events()
        assert store.count_events() == 2
        assert store.append(device_stream("HP-000001", 3)).appended == 1
    finally:
        store.close()


def test_a_lost_listen_is_taken_up_again(postgres_url: str) -> None:
    """After the listener's session ends, waiting reconnects and LISTENs again, and
    appends wake the waiter long before its timeout."""
    waiter = open_event_store(postgres_url)
    try:
        waiter.wait_for_appends(0)  # LISTEN
        _end_other_sessions(postgres_url)
        with pytest.raises(StoreUnavailableError):
            waiter.wait_for_appends(5)
        started = time.monotonic()
        waiter.wait_for_appends(5)  # LISTENs again, and returns for the caller to read
        assert time.monotonic() - started < 2
        woke = threading.Event()

        def wait() -> None:
            waiter.wait_for_appends(20)
            woke.set()

        thread = threading.Thread(target=wait)
        thread.start()
        time.sleep(0.3)
        writer = open_event_store(postgres_url)
        writer.append(device_stream("HP-000001", 1))
        writer.close()
        assert woke.wait(5), "the append's notification never arrived"
        thread.join()
    finally:
        waiter.close()


def test_a_multi_host_url_reaches_the_server_that_answers(postgres_url: str) -> None:
    """The first host is down: every user of the URL passes over it to the second."""
    dead = free_port()
    url = postgres_url.replace("@127.0.0.1:", f"@127.0.0.1:{dead},127.0.0.1:", 1)
    url += "?target_session_attrs=read-write"
    upgrade_schema(url)  # Alembic, through SQLAlchemy
    store = open_event_store(url)
    read_models = ReadModelStore(url)
    merkle_log = MerkleLog.open(url)
    try:
        assert store.append(device_stream("HP-000001", 2)).appended == 2
        assert read_models.checkpoint("projector").position == 0
        assert merkle_log.size() == 0
    finally:
        merkle_log.close()
        read_models.close()
        store.close()
