"""The SQLite schema, versioned with ``PRAGMA user_version``, and how files reach it.

``SqliteEventStore`` refuses a file below ``SCHEMA_VERSION``; ``coreline db upgrade``
(``upgrade_sqlite``) applies the missing steps.
"""

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final

_VERSION_1: Final = """
CREATE TABLE IF NOT EXISTS events (
    position     INTEGER PRIMARY KEY AUTOINCREMENT,
    stream_id    TEXT    NOT NULL,
    device_id    TEXT    NOT NULL,
    seq          INTEGER NOT NULL,
    event_id     TEXT    NOT NULL,
    type         TEXT    NOT NULL,
    occurred_at  TEXT    NOT NULL,
    received_at  TEXT    NOT NULL,
    hash         TEXT    NOT NULL,
    prev_hash    TEXT    NOT NULL,
    body         BLOB    NOT NULL,
    UNIQUE (stream_id, seq)
);
CREATE INDEX IF NOT EXISTS events_device_time ON events (device_id, occurred_at);
CREATE TRIGGER IF NOT EXISTS events_no_update BEFORE UPDATE ON events
BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;
CREATE TRIGGER IF NOT EXISTS events_no_delete BEFORE DELETE ON events
BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;

CREATE TABLE IF NOT EXISTS dead_letters (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    received_at  TEXT    NOT NULL,
    topic        TEXT    NOT NULL,
    reason       TEXT    NOT NULL,
    detail       TEXT    NOT NULL,
    device_id    TEXT,
    seq          INTEGER,
    raw          BLOB    NOT NULL,
    raw_size     INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS dead_letters_device ON dead_letters (device_id, received_at);

CREATE TABLE IF NOT EXISTS checkpoints (
    name         TEXT    PRIMARY KEY,
    commit_id    INTEGER NOT NULL,
    position     INTEGER NOT NULL,
    updated_at   TEXT    NOT NULL
);

CREATE TABLE IF NOT EXISTS heartbeats (
    device_id     TEXT    NOT NULL,
    sampled_at    TEXT    NOT NULL,
    received_at   TEXT    NOT NULL,
    battery_pct   REAL,
    temperature_c REAL,
    uptime_s      INTEGER,
    rssi_dbm      REAL
);
CREATE INDEX IF NOT EXISTS heartbeats_device_time ON heartbeats (device_id, sampled_at);
"""

_VERSION_2: Final = """
CREATE TABLE IF NOT EXISTS presence (
    device_id    TEXT    PRIMARY KEY,
    online       INTEGER NOT NULL CHECK (online IN (0, 1)),
    changed_at   TEXT    NOT NULL
);
"""

_UPGRADES: Final = (_VERSION_1, _VERSION_2)
"""The script that brings a file from ``user_version`` N to N + 1 is ``_UPGRADES[N]``.

Every statement is ``IF NOT EXISTS``: two upgraders can both read the old version
before either takes the write lock, and the second must then change nothing."""

SCHEMA_VERSION: Final = len(_UPGRADES)


def upgrade_sqlite(path: Path) -> None:
    """Create or upgrade the schema of the database file at ``path`` (idempotent)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with _closing(connect(path)) as connection:
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        if version < SCHEMA_VERSION:
            # One transaction for every pending step: a crash leaves the old version whole.
            steps = "".join(_UPGRADES[version:])
            connection.executescript(
                f"BEGIN IMMEDIATE; {steps} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
            )


def connect(path: Path) -> sqlite3.Connection:
    """A connection with the settings every user of the file needs (WAL, durable commits)."""
    # Autocommit mode: transactions are opened explicitly with BEGIN IMMEDIATE.
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    connection.execute("PRAGMA journal_mode = WAL")
    connection.execute("PRAGMA synchronous = FULL")
    return connection


@contextmanager
def _closing(connection: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    try:
        yield connection
    finally:
        connection.close()
