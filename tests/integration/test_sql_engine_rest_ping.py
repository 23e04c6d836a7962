"""A pooled PostgreSQL connection is tested as it leaves the pool only after it rested
there: one given back moments before goes out untested (no round trip), one a
failover broke while it rested is replaced, and a broken one handed out untested
fails once, after which the pool connects afresh."""

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import OperationalError

from services.eventstore import sql_engine
from services.eventstore.sql_engine import open_sql_engine


@pytest.fixture
def engine(postgres_url: str) -> Iterator[Engine]:
    opened = open_sql_engine(postgres_url)
    yield opened
    opened.dispose()


def _backend_pid(connection: Connection) -> int:
    pid: int = connection.execute(text("SELECT pg_backend_pid()")).scalar_one()
    return pid


def _terminate(postgres_url: str, pid: int) -> None:
    other = open_sql_engine(postgres_url)
    try:
        with other.connect() as connection:
            connection.execute(text("SELECT pg_terminate_backend(:pid, 5000)"), {"pid": pid})
    finally:
        other.dispose()


def _counting_pings(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """The pings the engine sends from now on (each still reaches the server)."""
    pings: list[object] = []
    ping = engine.dialect.do_ping

    def counted(dbapi_connection: Any) -> bool:
        pings.append(dbapi_connection)
        return ping(dbapi_connection)

    monkeypatch.setattr(engine.dialect, "do_ping", counted)
    return pings


def test_a_connection_given_back_moments_ago_goes_out_untested(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A connection that rested under ``PING_AFTER_REST`` is reused without a ping; one
    that rested longer is pinged once as it leaves the pool."""
    with engine.connect() as connection:
        pid = _backend_pid(connection)
    pings = _counting_pings(engine, monkeypatch)
    with engine.connect() as connection:
        assert _backend_pid(connection) == pid  # the same connection, reused
    assert pings == []
    monkeypatch.setattr(sql_engine, "PING_AFTER_REST", 0.0)
    with engine.connect() as connection:
        assert _backend_pid(connection) == pid
    assert len(pings) == 1


def test_a_broken_connection_that_rested_is_replaced(
    engine: Engine, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A connection a failover broke while it rested in the pool is never handed out."""
    with engine.connect() as connection:
        pid = _backend_pid(connection)
    _terminate(postgres_url, pid)
    monkeypatch.setattr(sql_engine, "PING_AFTER_REST", 0.0)
    with engine.connect() as connection:
        assert _backend_pid(connection) != pid


def test_a_broken_connection_given_back_moments_ago_fails_once(
    engine: Engine, postgres_url: str
) -> None:
    """Untested, a connection broken moments after it was given back fails its first
    statement; the pool then drops it and its elders, and the next checkout connects."""
    with engine.connect() as connection:
        pid = _backend_pid(connection)
    _terminate(postgres_url, pid)
    with pytest.raises(OperationalError), engine.connect() as connection:
        _backend_pid(connection)
    with engine.connect() as connection:
        assert _backend_pid(connection) != pid
