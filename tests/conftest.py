"""Shared fixtures: a real PostgreSQL server for the session, and an event store per
test for every adapter (in memory, SQLite, PostgreSQL)."""

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.eventstore import EventStore, InMemoryEventStore, open_event_store, upgrade_schema
from services.projections.read_store import ReadModelStore
from tests.support.postgres import TemporaryPostgres

SHARED_VECTORS_DIR = Path(__file__).resolve().parents[2] / "shared" / "protocol-vectors"
VENDORED_VECTORS_DIR = Path(__file__).resolve().parent / "protocol-vectors"
"""A copy of the shared vectors, so a checkout without ``../shared`` still tests them;
``tests/unit/test_vectors_copy.py`` keeps the copy identical while both exist."""
ADAPTERS = ("memory", "sqlite", "postgres")
DATABASE_ADAPTERS = ("sqlite", "postgres")
"""The adapters a URL can name: a test that needs ``store_url`` runs on these only."""
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


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run a test that uses a store once per adapter: on all of them when ``store`` is
    all it needs, on the database ones when it also asks for ``store_url`` (several
    connections, raw SQL), so that the store and the URL name one database."""
    if "adapter" in metafunc.fixturenames:
        needs_url = "store_url" in metafunc.fixturenames
        metafunc.parametrize("adapter", DATABASE_ADAPTERS if needs_url else ADAPTERS, indirect=True)


@pytest.fixture
def adapter(request: pytest.FixtureRequest) -> str:
    """The adapter under test (parametrized by ``pytest_generate_tests``)."""
    name: str = request.param
    return name


@pytest.fixture
def store_url(adapter: str, request: pytest.FixtureRequest) -> str:
    """The URL of a fresh store, once per database adapter."""
    url: str = request.getfixturevalue(f"{adapter}_url")
    return url


@pytest.fixture
def store(adapter: str, request: pytest.FixtureRequest) -> Iterator[EventStore]:
    """An open event store, once per adapter; on a database, the one ``store_url`` names."""
    opened: EventStore
    if adapter == "memory":
        opened = InMemoryEventStore()
    else:
        opened = open_event_store(request.getfixturevalue("store_url"))
    yield opened
    opened.close()


@pytest.fixture
def database(store_url: str) -> Iterator[ReadModelStore]:
    """The store's database through SQLAlchemy: the read models and the delivery tables."""
    opened = ReadModelStore(store_url)
    yield opened
    opened.close()
