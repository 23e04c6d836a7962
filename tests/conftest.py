"""Shared fixtures: a real PostgreSQL server for the session, and an event store per
test for every adapter."""

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.eventstore import EventStore, open_event_store, upgrade_schema
from tests.support.postgres import TemporaryPostgres

SHARED_VECTORS_DIR = Path(__file__).resolve().parents[2] / "shared" / "protocol-vectors"
VENDORED_VECTORS_DIR = Path(__file__).resolve().parent / "protocol-vectors"
"""A copy of the shared vectors, so a checkout without ``../shared`` still tests them;
``tests/unit/test_vectors_copy.py`` keeps the copy identical while both exist."""
_TEMPLATE = "coreline_template"
_database_numbers = itertools.count()


@pytest.fixture(scope="session")
def vectors_dir() -> Path:
    """The independent implementation's wire-protocol vectors (``../shared``, else the
    vendored copy)."""
    for candidate in (SHARED_VECTORS_DIR, VENDORED_VECTORS_DIR):
        if (candidate / "invalid.json").is_file():
            return candidate
    pytest.fail(
        f"protocol vectors found neither at {SHARED_VECTORS_DIR} nor {VENDORED_VECTORS_DIR}"
    )


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[TemporaryPostgres]:
    """One real PostgreSQL server on loopback for the whole run, with a migrated
    template database that per-test databases are cloned from."""
    with TemporaryPostgres() as server:
        upgrade_schema(server.create_database(_TEMPLATE))
        yield server


@pytest.fixture
def postgres_url(postgres_server: TemporaryPostgres) -> str:
    """A fresh, migrated database of its own for one test."""
    return postgres_server.create_database(f"test_{next(_database_numbers)}", template=_TEMPLATE)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A fresh, migrated SQLite file for one test."""
    url = f"sqlite:///{tmp_path / 'coreline.db'}"
    upgrade_schema(url)
    return url


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest) -> str:
    """The URL of a fresh store, once per adapter."""
    fixture = "sqlite_url" if request.param == "sqlite" else "postgres_url"
    url: str = request.getfixturevalue(fixture)
    return url


@pytest.fixture
def store(store_url: str) -> Iterator[EventStore]:
    """An open event store, once per adapter."""
    opened = open_event_store(store_url)
    yield opened
    opened.close()
