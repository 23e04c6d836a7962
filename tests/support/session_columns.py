"""Chosen ``read_sessions`` columns read back by session, and the start-up rebuild of
a read model that lacks some of them (a store written by an earlier release)."""

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, select, text

from services.api.queries.tables import READ
from services.eventstore import open_event_store
from services.projections.read_schema import read_schema_gap
from services.projections.read_store import ReadModelStore
from services.projector.read_upgrade import bring_up_to_date


@contextmanager
def read_connection(database_url: str) -> Iterator[Connection]:
    read_models = ReadModelStore(database_url)
    try:
        with read_models.engine.connect() as connection:
            yield connection
    finally:
        read_models.close()


def session_columns(connection: Connection, names: Sequence[str]) -> dict[str, tuple[Any, ...]]:
    sessions = READ.sessions
    rows = connection.execute(select(sessions.c.session_id, *(sessions.c[n] for n in names)))
    return {row[0]: tuple(row[1:]) for row in rows}


def rebuilt_without(database_url: str, names: Sequence[str]) -> tuple[dict[str, Any], ...]:
    """Drops ``names`` from ``read_sessions`` and starts as a projector does: the gap is
    named, the read models are rebuilt by replay, and the next start replays nothing.
    The columns as folded before the drop, and as rebuilt."""
    with read_connection(database_url) as connection:
        folded = session_columns(connection, names)
        for name in names:
            connection.execute(text(f"ALTER TABLE read_sessions DROP COLUMN {name}"))
        connection.commit()

    earlier = ReadModelStore(database_url)
    events = open_event_store(database_url)
    try:
        gap = read_schema_gap(earlier.engine, earlier.tables)
        assert gap.columns == {"read_sessions": list(names)}
        said: list[str] = []
        assert bring_up_to_date(earlier, database_url, events, said.append) is not None
        assert f"read_sessions lacks {names[0]}" in said[0]
        with earlier.engine.connect() as connection:
            rebuilt = session_columns(connection, names)
        # Current now, generated columns included: the next start replays nothing.
        assert bring_up_to_date(earlier, database_url, events, said.append) is None
    finally:
        events.close()
        earlier.close()
    return folded, rebuilt
