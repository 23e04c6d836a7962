"""Open the event store a database URL names, and create or upgrade its schema."""

from typing import Final

import psycopg
import sqlalchemy.exc
from alembic import command
from alembic.config import Config

from services.eventstore.database_url import Backend, DatabaseUrl, unreachable
from services.eventstore.driver_errors import DriverErrors
from services.eventstore.migrations import MIGRATIONS_DIR
from services.eventstore.ports import EventStore
from services.eventstore.postgres import PostgresEventStore
from services.eventstore.sqlite import SQLITE_ERRORS, SqliteEventStore
from services.eventstore.sqlite_schema import upgrade_sqlite

# Alembic runs on SQLAlchemy, which wraps psycopg's errors in its own DBAPIError family.
_MIGRATION_ERRORS: Final = DriverErrors(
    refused=(
        sqlalchemy.exc.DataError,
        sqlalchemy.exc.IntegrityError,
        psycopg.DataError,
        psycopg.IntegrityError,
    ),
    failed=(sqlalchemy.exc.DBAPIError, psycopg.Error),
)


def open_event_store(url: str) -> EventStore:
    database = DatabaseUrl.parse(url)
    if database.backend is Backend.SQLITE:
        return SqliteEventStore(database.sqlite_path)
    return PostgresEventStore(database.url)


def upgrade_schema(url: str) -> None:
    """Bring the database to the schema this code needs; a no-op when it is there."""
    database = DatabaseUrl.parse(url)
    if database.backend is Backend.SQLITE:
        with SQLITE_ERRORS:
            upgrade_sqlite(database.sqlite_path)
        return
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["sqlalchemy_url"] = database.sqlalchemy_url
    with _MIGRATION_ERRORS:
        try:
            command.upgrade(config, "head")
        except (sqlalchemy.exc.OperationalError, psycopg.OperationalError) as error:
            raise unreachable(database.url, error) from error
