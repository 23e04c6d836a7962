"""The one way SQLAlchemy users of the platform's database (read models, the
transparency log, configuration delivery) open an engine: the same URL forms as the
event store, the same failover behaviour on PostgreSQL, the same settings on SQLite."""

import time
from typing import Any, Final

import sqlalchemy
from sqlalchemy import Engine, event, exc

from services.eventstore.database_url import Backend, DatabaseUrl


def open_sql_engine(url: str, **options: Any) -> Engine:
    """``options`` go to ``sqlalchemy.create_engine`` beside the platform's own (a JSON
    serializer, say)."""
    database = DatabaseUrl.parse(url)
    if database.backend is not Backend.SQLITE:
        engine = sqlalchemy.create_engine(
            database.sqlalchemy_url, **database.engine_options, **options
        )
        _ping_rested_connections(engine)
        return engine
    engine = sqlalchemy.create_engine(url, **options)
    event.listen(engine, "connect", _sqlite_settings)
    return engine


def _sqlite_settings(connection: Any, _record: Any) -> None:
    # WAL lets readers work beside the one writer; FULL makes a commit durable as the
    # event store's are; the timeout waits out another process's write.
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode = WAL")
    cursor.execute("PRAGMA synchronous = FULL")
    cursor.execute("PRAGMA busy_timeout = 30000")
    cursor.close()


PING_AFTER_REST: Final = 1.0
"""Seconds a pooled PostgreSQL connection may rest before it is tested on leaving the
pool.  A failover breaks the connections resting in the pool; testing each one on
every checkout (``pool_pre_ping``) cost the API a round trip per request on
connections given back milliseconds before.  One that rested less is handed out
untested: if a failover broke it in that moment, its first statement fails (the API
answers 503) and SQLAlchemy then drops every pooled connection, so the next
checkout connects afresh."""

_CHECKED_IN_AT: Final = "coreline.checked_in_at"


def _ping_rested_connections(engine: Engine) -> None:
    dialect = engine.dialect

    def checked_in(_dbapi_connection: Any, record: Any) -> None:
        record.info[_CHECKED_IN_AT] = time.monotonic()

    def checked_out(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        # A new connection has no time of rest: just made, it is not tested (nor is
        # it by SQLAlchemy's own pre-ping).
        rested_since = record.info.pop(_CHECKED_IN_AT, None)
        if rested_since is None or time.monotonic() - rested_since < PING_AFTER_REST:
            return
        try:
            dialect.do_ping(dbapi_connection)
        except dialect.loaded_dbapi.Error as error:
            if dialect.is_disconnect(error, dbapi_connection, None):
                # The pool drops this and every older connection and checks out again.
                raise exc.InvalidatePoolError() from error
            raise

    event.listen(engine, "checkin", checked_in)
    event.listen(engine, "checkout", checked_out)
