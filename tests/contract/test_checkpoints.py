"""Checkpoints (``services.eventstore.checkpoints``) move with the caller's transaction,
over the store's own database."""

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, create_engine

from services.eventstore import (
    Backend,
    Cursor,
    DatabaseUrl,
    EventStore,
    load_checkpoint,
    save_checkpoint,
)
from tests.support.streams import device_stream


@pytest.fixture
def engine(store_url: str) -> Iterator[Engine]:
    """The store's database through SQLAlchemy, as the projector and the notifier reach it."""
    database = DatabaseUrl.parse(store_url)
    opened = create_engine(
        store_url if database.backend is Backend.SQLITE else database.sqlalchemy_url
    )
    yield opened
    opened.dispose()


def _load(engine: Engine, name: str) -> Cursor:
    with engine.connect() as connection:
        return load_checkpoint(connection, name)


def _save(engine: Engine, name: str, cursor: Cursor) -> None:
    with engine.begin() as connection:
        save_checkpoint(connection, name, cursor)


def test_checkpoints_start_at_the_beginning_and_remember(store: EventStore, engine: Engine) -> None:
    """An unknown subscriber starts at START; a saved cursor is loaded back and can move on."""
    assert _load(engine, "projector") == Cursor.START
    store.append(device_stream("HP-000001", 3))
    last = store.read(Cursor.START)[-1].cursor
    _save(engine, "projector", last)
    assert _load(engine, "projector") == last
    _save(engine, "projector", Cursor(last.commit, last.position + 1))
    assert _load(engine, "projector").position == last.position + 1
    assert _load(engine, "other") == Cursor.START


class _CrashError(Exception):
    """Stands for whatever ends a read-model transaction before it commits."""


def _save_then_crash(engine: Engine, name: str, cursor: Cursor) -> None:
    with engine.begin() as connection:
        save_checkpoint(connection, name, cursor)
        raise _CrashError


def test_a_checkpoint_moves_only_if_its_transaction_commits(
    store: EventStore, engine: Engine
) -> None:
    """A checkpoint saved in a transaction that rolls back stays where it was, so the
    events after it are read again along with the rows they would have produced."""
    store.append(device_stream("HP-000001", 2))
    first, second = (event.cursor for event in store.read(Cursor.START))
    _save(engine, "projector", first)
    with pytest.raises(_CrashError):
        _save_then_crash(engine, "projector", second)
    assert _load(engine, "projector") == first
