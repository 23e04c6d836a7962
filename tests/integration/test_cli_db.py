"""``coreline db upgrade`` and start-up checks, through the real command line."""

import os
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import psycopg
import pytest

from services.eventstore import SchemaMissingError, open_event_store
from services.eventstore.migrations import SCHEMA_REVISION
from tests.support.postgres import TemporaryPostgres

_KEYS = Path(tempfile.mkdtemp(prefix="coreline-cli-keys-"))


def _coreline(*args: str, database_url: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("CORELINE_")}
    # `db upgrade` makes the log's signing key when there is none: not in the checkout.
    env["CORELINE_LOG_KEY_FILE"] = str(_KEYS / f"{uuid.uuid4().hex}.key")
    if database_url:
        env["CORELINE_DATABASE_URL"] = database_url
    command = [sys.executable, "-m", "services", *args]
    return subprocess.run(
        command, capture_output=True, text=True, env=env, timeout=120, check=False
    )


def _schema_snapshot(url: str) -> list[tuple[str, str]]:
    with psycopg.connect(url) as connection:
        rows = connection.execute(
            "SELECT c.relname, c.relkind::text FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'public' ORDER BY 1"
        ).fetchall()
        version = connection.execute("SELECT version_num FROM alembic_version").fetchall()
    return [*rows, *(("alembic_version", v[0]) for v in version)]


def test_help_lists_the_subcommands() -> None:
    """``coreline --help`` works and names the database commands."""
    result = _coreline("--help")
    assert result.returncode == 0, result.stderr
    assert "db" in result.stdout
    db_help = _coreline("db", "--help")
    assert "upgrade" in db_help.stdout


def test_db_upgrade_creates_the_schema_once(postgres_server: TemporaryPostgres) -> None:
    """On an empty database the schema appears; a second run changes nothing."""
    url = postgres_server.create_database("cli_upgrade")
    first = _coreline("db", "upgrade", database_url=url)
    assert first.returncode == 0, first.stderr
    assert "postgres@127.0.0.1" in first.stdout
    snapshot = _schema_snapshot(url)
    names = {name for name, _ in snapshot}
    assert {
        "events",
        "dead_letters",
        "checkpoints",
        "heartbeats",
        "heartbeats_default",
        "presence",
    } <= names
    assert ("alembic_version", SCHEMA_REVISION) in snapshot
    second = _coreline("db", "upgrade", database_url=url)
    assert second.returncode == 0, second.stderr
    assert _schema_snapshot(url) == snapshot


def test_heartbeats_fall_back_to_native_partitions(postgres_url: str) -> None:
    """Without TimescaleDB, heartbeats are range-partitioned by month with a default partition."""
    with psycopg.connect(postgres_url) as connection:
        kind = connection.execute(
            "SELECT relkind::text FROM pg_class WHERE relname = 'heartbeats'"
        ).fetchone()
        partitions = connection.execute(
            "SELECT count(*) FROM pg_inherits WHERE inhparent = 'heartbeats'::regclass"
        ).fetchone()
    assert kind == ("p",)
    assert partitions is not None
    assert partitions[0] >= 4  # default + this month + two ahead


def test_db_upgrade_creates_an_embedded_database(tmp_path: Path) -> None:
    """With a SQLite URL the embedded schema is created, and a store opens on it."""
    url = f"sqlite:///{tmp_path / 'nested' / 'coreline.db'}"
    result = _coreline("db", "upgrade", database_url=url)
    assert result.returncode == 0, result.stderr
    open_event_store(url).close()


def test_bad_database_url_fails_with_what_to_fix() -> None:
    """A URL Coreline cannot use exits 2 naming the variable and the accepted forms,
    without echoing the password."""
    result = _coreline("db", "upgrade", database_url="mysql://root:s3cret@db/coreline")
    assert result.returncode == 2
    assert "CORELINE_DATABASE_URL" in result.stderr
    assert "postgresql://" in result.stderr
    assert "s3cret" not in result.stderr + result.stdout


def test_unreachable_database_fails_cleanly(tmp_path: Path) -> None:
    """A PostgreSQL that does not answer is reported in one line, not a traceback."""
    result = _coreline("db", "upgrade", database_url="postgresql://u:pw@127.0.0.1:1/none")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "cannot reach the database" in result.stderr


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_store_refuses_a_database_without_schema(
    backend: str, postgres_server: TemporaryPostgres, tmp_path: Path
) -> None:
    """Opening a store on an un-migrated database says to run ``coreline db upgrade``."""
    url = (
        f"sqlite:///{tmp_path / 'empty.db'}"
        if backend == "sqlite"
        else postgres_server.create_database(f"empty_{backend}")
    )
    with pytest.raises(SchemaMissingError, match="coreline db upgrade"):
        open_event_store(url)


def test_token_commands_on_a_database_without_the_schema_say_to_upgrade(tmp_path: Path) -> None:
    """``coreline token create`` on a database never upgraded fails with exit 2 and says
    to run ``coreline db upgrade``, instead of creating tables or printing a traceback."""
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    result = _coreline("token", "create", "--role", "manufacturer", database_url=url)
    assert result.returncode == 2, result.stderr
    assert "coreline db upgrade" in result.stderr
    assert "Traceback" not in result.stderr
