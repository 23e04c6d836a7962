"""The one way SQLAlchemy users of the platform's database (read models, the
transparency log, configuration delivery) open an engine: the same URL forms as the
event store, the same failover behaviour on PostgreSQL, the same settings on SQLite."""

from typing import Any

import sqlalchemy
from sqlalchemy import Engine, event

from services.eventstore.database_url import Backend, DatabaseUrl


def open_sql_engine(url: str, **options: Any) -> Engine:
    """``options`` go to ``sqlalchemy.create_engine`` beside the platform's own (a JSON
    serializer, say)."""
    database = DatabaseUrl.parse(url)
    if database.backend is not Backend.SQLITE:
        return sqlalchemy.create_engine(
            database.sqlalchemy_url, **database.engine_options, **options
        )
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
