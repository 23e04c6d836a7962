"""Tampering with stored events the way an attacker with database superuser rights
would: the append-only triggers switched off (PostgreSQL) or dropped (SQLite)."""

import sqlite3

import psycopg

from services.eventstore import Backend, DatabaseUrl


def as_attacker(url: str, *statements: tuple[str, tuple[object, ...]]) -> None:
    """Run ``statements`` (``%s`` placeholders) after switching the append-only
    triggers off, in one transaction."""
    database = DatabaseUrl.parse(url)
    if database.backend is Backend.SQLITE:
        with sqlite3.connect(database.sqlite_path) as connection:
            connection.execute("DROP TRIGGER events_no_update")
            connection.execute("DROP TRIGGER events_no_delete")
            for statement, params in statements:
                connection.execute(statement.replace("%s", "?"), params)
        connection.close()
        return
    with psycopg.connect(url) as pg_connection:
        pg_connection.execute("ALTER TABLE events DISABLE TRIGGER ALL")
        for statement, params in statements:
            pg_connection.execute(statement, params)
