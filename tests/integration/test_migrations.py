"""``coreline db upgrade`` owns every table that holds state no replay rebuilds (API
tokens, webhooks and their delivery log, clinic alert policies, the alert engine's
book), on both backends, and carries forward databases whose tables were once made
at run time by ``create_all``."""

import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import pytest
import sqlalchemy
from alembic import command
from alembic.config import Config
from sqlalchemy import Column, Dialect, Engine, Inspector, MetaData, Table, text
from sqlalchemy.types import BigInteger, DateTime, Integer, Text

from services.alerts import store as alert_store
from services.api import Role, list_tokens
from services.api.identity.register import device_certificates
from services.api.people.tables import users, web_sessions
from services.api.tokens import api_token_expiry, api_tokens
from services.config_delivery import TABLES as CONFIG_DELIVERY_TABLES
from services.delivery import create_webhook, list_webhooks
from services.delivery.email_tables import EMAIL_TABLES
from services.delivery.tables import TABLES as DELIVERY_TABLES
from services.eventstore import Backend, DatabaseUrl, SchemaMissingError, open_event_store
from services.eventstore.migrations import MIGRATIONS_DIR, SCHEMA_REVISION
from services.eventstore.sqlite_schema import SCHEMA_VERSION, upgrade_sqlite
from services.merkle_log import log_checkpoints, log_leaves, log_nodes
from services.projections.tables import read_tables
from tests.support.api_client import api_client, bearer
from tests.support.postgres import TemporaryPostgres

SEALS: Final = Table(
    "seals",
    MetaData(),
    Column("stream_id", Text, primary_key=True),
    Column("seq", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True),
    Column("key_id", Text, nullable=False),
    Column("sig", Text, nullable=False),
    Column("stored_at", DateTime(timezone=True).with_variant(Text(), "sqlite"), nullable=False),
)
"""Device seals (DESIGN §4.1), as the store adapters query them with SQL of their own."""
OWNED: Final = (
    SEALS,
    api_tokens,
    DELIVERY_TABLES.webhooks,
    DELIVERY_TABLES.deliveries,
    DELIVERY_TABLES.deletions,
    alert_store.alert_conditions,
    alert_store.alert_policies,
    api_token_expiry,
    users,
    web_sessions,
    log_leaves,
    log_nodes,
    log_checkpoints,
    device_certificates,
    *CONFIG_DELIVERY_TABLES,
    EMAIL_TABLES.preferences,
    EMAIL_TABLES.emails,
)
"""The tables the migrations make, as the code that queries them defines them."""
LEGACY_TOKENS: Final = Table(
    "api_tokens",
    MetaData(),
    *(column._copy() for column in api_tokens.columns),
)
"""``api_tokens`` as ``create_all`` made it, before tokens expired."""
OLD_WAY: Final[dict[str, MetaData]] = {
    "tokens": LEGACY_TOKENS.metadata,
    "delivery": DELIVERY_TABLES.metadata,
    "alerts": alert_store.metadata,
}
"""What ``create_all`` used to make at run time, one module's tables at a time."""
READ_MODELS: Final = frozenset(read_tables().metadata.tables)
"""Made by the read-model store and replay, which rebuilds them: not the migrations'."""
PREVIOUS_REVISION: Final = "0002"
PREVIOUS_VERSION: Final = 2
MASTER_KEY: Final = b"migrations-master-key-0123456789abcdef"
CLINIC: Final = "clinic-7"

EngineOf = Callable[[str], Engine]
_LOG_KEY_DIR: Final = Path(tempfile.mkdtemp(prefix="coreline-migrations-"))


def _coreline(*args: str, database_url: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("CORELINE_")}
    env["CORELINE_DATABASE_URL"] = database_url
    # ``db upgrade`` makes the log key when missing: beside a SQLite file, else in the
    # working directory, which must not be the checkout.
    env["CORELINE_LOG_KEY_FILE"] = str(_LOG_KEY_DIR / "coreline-log.key")
    argv = [sys.executable, "-m", "services", *args]
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120, check=False)


def _upgrade(url: str) -> None:
    result = _coreline("db", "upgrade", database_url=url)
    assert result.returncode == 0, result.stderr


def _engine(url: str) -> Engine:
    database = DatabaseUrl.parse(url)
    sqlite = database.backend is Backend.SQLITE
    return sqlalchemy.create_engine(url if sqlite else database.sqlalchemy_url)


def _current_version(backend: str) -> int | str:
    return SCHEMA_VERSION if backend == "sqlite" else SCHEMA_REVISION


@pytest.fixture
def engine_of() -> Iterator[EngineOf]:
    """Engines on a test's databases, disposed of at its end."""
    opened: list[Engine] = []

    def engine_of(url: str) -> Engine:
        opened.append(_engine(url))
        return opened[-1]

    yield engine_of
    for engine in opened:
        engine.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    """Each test once per backend."""
    return str(request.param)


@pytest.fixture
def empty_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """A database without any schema yet, once per backend."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'empty.db'}"
    server: TemporaryPostgres = request.getfixturevalue("postgres_server")
    return server.create_database(f"migrations_{tmp_path.name}"[:63])


@pytest.fixture
def upgraded_url(backend: str, request: pytest.FixtureRequest) -> str:
    """A fresh database brought to the current schema, once per backend."""
    url: str = request.getfixturevalue("sqlite_url" if backend == "sqlite" else "postgres_url")
    return url


def _leave_at_previous_schema(url: str) -> None:
    """Migrate only as far as the schema before this one (0002, version 2)."""
    database = DatabaseUrl.parse(url)
    if database.backend is Backend.SQLITE:
        upgrade_sqlite(database.sqlite_path, PREVIOUS_VERSION)
        return
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["sqlalchemy_url"] = database.sqlalchemy_url
    command.upgrade(config, PREVIOUS_REVISION)


# -- what a database holds ----------------------------------------------------------


def _declared(table: Table, dialect: Dialect) -> dict[str, Any]:
    return {
        "columns": [
            (column.name, column.type.compile(dialect=dialect), column.nullable)
            for column in table.columns
        ],
        "primary key": [column.name for column in table.primary_key.columns],
        "unique": sorted(
            tuple(column.name for column in constraint.columns)
            for constraint in table.constraints
            if isinstance(constraint, sqlalchemy.UniqueConstraint)
        ),
        "foreign keys": sorted(
            (
                tuple(constraint.column_keys),
                constraint.referred_table.name,
                tuple(element.column.name for element in constraint.elements),
            )
            for constraint in table.foreign_key_constraints
        ),
        "indexes": sorted(
            (str(index.name), tuple(column.name for column in index.columns), index.unique)
            for index in table.indexes
        ),
    }


def _reflected(inspector: Inspector, name: str, dialect: Dialect) -> dict[str, Any]:
    return {
        "columns": [
            (column["name"], column["type"].compile(dialect=dialect), column["nullable"])
            for column in inspector.get_columns(name)
        ],
        "primary key": inspector.get_pk_constraint(name)["constrained_columns"],
        "unique": sorted(
            tuple(unique["column_names"]) for unique in inspector.get_unique_constraints(name)
        ),
        "foreign keys": sorted(
            (
                tuple(key["constrained_columns"]),
                key["referred_table"],
                tuple(key["referred_columns"]),
            )
            for key in inspector.get_foreign_keys(name)
        ),
        # PostgreSQL lists the index behind each unique constraint too; those are above.
        "indexes": sorted(
            (str(index["name"]), tuple(map(str, index["column_names"])), bool(index["unique"]))
            for index in inspector.get_indexes(name)
            if "duplicates_constraint" not in index
        ),
    }


def _schema(engine: Engine) -> dict[str, Any]:
    """The owned tables as the database describes them, every relation's name (indexes,
    sequences and constraints included) and the schema version: what a second upgrade
    must leave alone and what a carried-forward database must share with a fresh one."""
    inspector = sqlalchemy.inspect(engine)
    with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            relations = connection.execute(
                text("SELECT type, name, tbl_name FROM sqlite_master ORDER BY name")
            ).all()
            version = connection.execute(text("PRAGMA user_version")).scalar()
        else:
            relations = connection.execute(
                text(
                    "SELECT c.relname, c.relkind::text FROM pg_class c "
                    "JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE n.nspname = 'public' ORDER BY 1"
                )
            ).all()
            version = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    return {
        "tables": {
            table.name: _reflected(inspector, table.name, engine.dialect) for table in OWNED
        },
        # How row ids are numbered (BIGSERIAL's default, not an identity) is schema too.
        "defaults": {
            table.name: [
                (column["name"], column.get("default"), "identity" in column)
                for column in inspector.get_columns(table.name)
            ]
            for table in OWNED
        },
        "relations": [tuple(row) for row in relations],
        "version": version,
    }


def _table_names(engine: Engine) -> set[str]:
    """Every table but the read models (which the read-model store makes when missing)."""
    return set(sqlalchemy.inspect(engine).get_table_names()) - READ_MODELS


# -- the tests ----------------------------------------------------------------------


def test_migrations_make_the_tables_the_code_queries(
    upgraded_url: str, engine_of: EngineOf
) -> None:
    """Each owned table made by ``db upgrade`` has the columns (names, types,
    nullability), keys and indexes of the SQLAlchemy definition the code queries."""
    engine = engine_of(upgraded_url)
    inspector = sqlalchemy.inspect(engine)
    for table in OWNED:
        declared = _declared(table, engine.dialect)
        assert _reflected(inspector, table.name, engine.dialect) == declared, table.name


def test_writes_that_used_to_make_tables_make_none(upgraded_url: str, engine_of: EngineOf) -> None:
    """On a freshly upgraded database, ``coreline token create`` and a policy and a
    webhook set through the API leave the set of tables as it was."""
    engine = engine_of(upgraded_url)
    before = _table_names(engine)
    assert {table.name for table in OWNED} <= before

    created = _coreline("token", "create", "--role", "manufacturer", database_url=upgraded_url)
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip().splitlines()[-1]
    with api_client(upgraded_url) as client:
        headers = bearer(token)
        policy = client.put(
            f"/api/v1/clinics/{CLINIC}/policy", headers=headers, json={"coverage_max_pct": 6}
        )
        assert policy.status_code == 200, policy.text
        hook = client.post(
            f"/api/v1/clinics/{CLINIC}/webhooks",
            headers=headers,
            json={"url": "https://clinic-7.example/hook"},
        )
        assert hook.status_code == 201, hook.text

    assert _table_names(engine) == before
    assert [record.role for record in list_tokens(engine)] == [Role.MANUFACTURER]
    assert alert_store.policy_overrides(engine, CLINIC) == {"coverage_max_pct": 6}
    assert [webhook.clinic_id for webhook in list_webhooks(engine)] == [CLINIC]


@pytest.mark.parametrize(
    "made", [("tokens", "alerts"), ("tokens", "alerts", "delivery")], ids=["some", "all"]
)
def test_a_database_at_the_previous_schema_with_run_time_tables_upgrades_keeping_rows(
    made: tuple[str, ...], backend: str, empty_url: str, upgraded_url: str, engine_of: EngineOf
) -> None:
    """A database left at 0002 / version 2 whose tables ``create_all`` made at run time
    (some or all of them, with rows) is refused, then upgrades cleanly, keeps its rows
    and ends with the same schema as a fresh one."""
    _leave_at_previous_schema(empty_url)
    engine = engine_of(empty_url)
    for module in made:
        OLD_WAY[module].create_all(engine)
    with engine.begin() as connection:
        connection.execute(
            LEGACY_TOKENS.insert().values(
                token_id="legacy-token", digest="0" * 64, role=Role.CLINIC.value,  # noqa: S106
                clinic_id=CLINIC, label="front desk", created_at=datetime.now(UTC),
            )
        )  # fmt: skip
    alert_store.set_policy(engine, CLINIC, {"coverage_max_pct": 6})
    webhook_id = None
    if "delivery" in made:
        webhook_id, _ = create_webhook(engine, MASTER_KEY, CLINIC, "https://a.example/hook")
    with pytest.raises(SchemaMissingError, match="coreline db upgrade"):
        open_event_store(empty_url)

    _upgrade(empty_url)

    open_event_store(empty_url).close()
    assert [(token.token_id, token.label) for token in list_tokens(engine)] == [
        ("legacy-token", "front desk")
    ]
    # A token from before expiry existed lives a year from the upgrade, not for ever.
    (carried,) = list_tokens(engine)
    assert carried.expires_at is not None
    assert abs(carried.expires_at - datetime.now(UTC) - timedelta(days=365)) < timedelta(hours=1)
    assert alert_store.policy_overrides(engine, CLINIC) == {"coverage_max_pct": 6}
    assert [webhook.id for webhook in list_webhooks(engine)] == ([webhook_id] if webhook_id else [])
    fresh = _schema(engine_of(upgraded_url))
    assert _schema(engine) == fresh
    assert fresh["version"] == _current_version(backend)


def test_db_upgrade_twice_is_a_no_op(backend: str, empty_url: str, engine_of: EngineOf) -> None:
    """A second ``coreline db upgrade`` changes nothing the first one made."""
    _upgrade(empty_url)
    engine = engine_of(empty_url)
    first = _schema(engine)
    assert first["version"] == _current_version(backend)
    assert {table.name for table in OWNED} <= _table_names(engine)
    _upgrade(empty_url)
    assert _schema(engine) == first
