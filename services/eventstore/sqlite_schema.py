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

# State no replay rebuilds: API tokens, webhooks and their delivery log, clinic alert
# policies and the alert engine's book.  Until version 3 SQLAlchemy's ``create_all``
# made these at run time from the same definitions, so a version 2 file may already
# hold some of them, with rows: each statement is what ``create_all`` emitted (its
# declared types, its constraint order, hence the same automatic index names), so a
# file carried forward and a fresh one end with the same schema.
_VERSION_3: Final = """
CREATE TABLE IF NOT EXISTS api_tokens (
    token_id     TEXT     NOT NULL,
    digest       TEXT     NOT NULL,
    role         TEXT     NOT NULL,
    clinic_id    TEXT,
    label        TEXT     NOT NULL,
    created_at   DATETIME NOT NULL,
    revoked_at   DATETIME,
    PRIMARY KEY (token_id),
    UNIQUE (digest)
);

CREATE TABLE IF NOT EXISTS webhooks (
    id             TEXT     NOT NULL,
    clinic_id      TEXT     NOT NULL,
    url            TEXT     NOT NULL,
    secret_version INTEGER  NOT NULL,
    created_at     DATETIME NOT NULL,
    active         BOOLEAN  NOT NULL,
    PRIMARY KEY (id)
);
CREATE INDEX IF NOT EXISTS webhooks_clinic_active ON webhooks (clinic_id, active);

CREATE TABLE IF NOT EXISTS webhook_deliveries (
    id               INTEGER  NOT NULL,
    webhook_id       TEXT     NOT NULL,
    event_id         TEXT     NOT NULL,
    alert_id         TEXT     NOT NULL,
    payload          TEXT     NOT NULL,
    attempts         INTEGER  NOT NULL,
    state            TEXT     NOT NULL,
    last_status      INTEGER,
    last_error       TEXT,
    next_attempt_at  DATETIME,
    delivered_at     DATETIME,
    created_at       DATETIME NOT NULL,
    PRIMARY KEY (id),
    CONSTRAINT webhook_deliveries_once UNIQUE (webhook_id, event_id),
    FOREIGN KEY (webhook_id) REFERENCES webhooks (id)
);
CREATE INDEX IF NOT EXISTS webhook_deliveries_due ON webhook_deliveries (state, next_attempt_at);
CREATE INDEX IF NOT EXISTS webhook_deliveries_event ON webhook_deliveries (event_id);

CREATE TABLE IF NOT EXISTS alert_conditions (
    device_id    TEXT NOT NULL,
    rule         TEXT NOT NULL,
    subject      TEXT NOT NULL,
    alert_id     TEXT NOT NULL,
    PRIMARY KEY (device_id, rule, subject)
);

CREATE TABLE IF NOT EXISTS alert_policies (
    clinic_id    TEXT     NOT NULL,
    overrides    JSON     NOT NULL,
    updated_at   DATETIME NOT NULL,
    PRIMARY KEY (clinic_id)
);
"""

# Chain custody (DESIGN §4.2): events that arrived past a hole, kept raw outside the
# stream until the hole fills.  Several candidates may wait for one seq, hence the
# hash in the key.  A held row is never changed: it is deleted when it joins the
# stream or is refused (it never was in the stream, so append-only is not touched).
_VERSION_4: Final = """
CREATE TABLE IF NOT EXISTS held_events (
    stream_id    TEXT    NOT NULL,
    device_id    TEXT    NOT NULL,
    seq          INTEGER NOT NULL CHECK (seq >= 1),
    event_id     TEXT    NOT NULL,
    type         TEXT    NOT NULL,
    occurred_at  TEXT    NOT NULL,
    received_at  TEXT    NOT NULL,
    hash         TEXT    NOT NULL,
    prev_hash    TEXT    NOT NULL,
    body         BLOB    NOT NULL,
    PRIMARY KEY (stream_id, seq, hash)
);
CREATE INDEX IF NOT EXISTS held_events_received ON held_events (received_at);
CREATE TRIGGER IF NOT EXISTS held_events_no_update BEFORE UPDATE ON held_events
BEGIN SELECT RAISE(ABORT, 'held events are never changed, only promoted or refused'); END;
"""

# Deleted webhooks: the webhook's row stays (its delivery log still names it) and
# gains a row here; a table rather than a column, so the step stays IF NOT EXISTS.
_VERSION_5: Final = """
CREATE TABLE IF NOT EXISTS webhook_deletions (
    webhook_id  TEXT     NOT NULL,
    deleted_at  DATETIME NOT NULL,
    PRIMARY KEY (webhook_id),
    FOREIGN KEY (webhook_id) REFERENCES webhooks (id)
);
"""

# People (DESIGN §9): named accounts and their dashboard sessions; machine tokens
# gain an expiry, a year from the upgrade for those made before.  The expiry has a
# table of its own because ADD COLUMN has no IF NOT EXISTS, and INSERT OR IGNORE
# keeps a second run from touching an expiry already set.
_VERSION_6: Final = """
CREATE TABLE IF NOT EXISTS users (
    user_id          TEXT     NOT NULL,
    email            TEXT     NOT NULL,
    display_name     TEXT     NOT NULL,
    role             TEXT     NOT NULL,
    clinic_id        TEXT,
    password_hash    TEXT,
    totp_sealed      TEXT,
    totp_last_step   BIGINT,
    disabled         BOOLEAN  NOT NULL,
    failed_attempts  INTEGER  NOT NULL,
    locked_until     DATETIME,
    created_at       DATETIME NOT NULL,
    updated_at       DATETIME NOT NULL,
    PRIMARY KEY (user_id),
    UNIQUE (email)
);
CREATE TABLE IF NOT EXISTS web_sessions (
    session_digest  TEXT     NOT NULL,
    user_id         TEXT     NOT NULL,
    created_at      DATETIME NOT NULL,
    last_seen_at    DATETIME NOT NULL,
    expires_at      DATETIME NOT NULL,
    PRIMARY KEY (session_digest),
    FOREIGN KEY (user_id) REFERENCES users (user_id)
);
CREATE INDEX IF NOT EXISTS web_sessions_user ON web_sessions (user_id);
CREATE TABLE IF NOT EXISTS api_token_expiry (
    token_id    TEXT     NOT NULL,
    expires_at  DATETIME NOT NULL,
    PRIMARY KEY (token_id),
    FOREIGN KEY (token_id) REFERENCES api_tokens (token_id)
);
INSERT OR IGNORE INTO api_token_expiry (token_id, expires_at)
SELECT token_id, datetime('now', '+365 days') FROM api_tokens;
"""

# Device seals (DESIGN §4.1): one row per verified batch seal, append-only as the
# events it seals.
_VERSION_7: Final = """
CREATE TABLE IF NOT EXISTS seals (
    stream_id  TEXT    NOT NULL,
    seq        INTEGER NOT NULL CHECK (seq >= 1),
    key_id     TEXT    NOT NULL,
    sig        TEXT    NOT NULL,
    stored_at  TEXT    NOT NULL,
    PRIMARY KEY (stream_id, seq)
);
CREATE TRIGGER IF NOT EXISTS seals_no_update BEFORE UPDATE ON seals
BEGIN SELECT RAISE(ABORT, 'seals are append-only'); END;
CREATE TRIGGER IF NOT EXISTS seals_no_delete BEFORE DELETE ON seals
BEGIN SELECT RAISE(ABORT, 'seals are append-only'); END;
"""

# The transparency log (DESIGN §11): leaves and complete-subtree nodes (rebuildable
# from the events) and every signed checkpoint (not rebuildable: witnesses hold them).
_VERSION_8: Final = """
CREATE TABLE IF NOT EXISTS log_leaves (
    leaf_index  BIGINT  NOT NULL,
    stream_id   TEXT    NOT NULL,
    seq         BIGINT  NOT NULL,
    event_hash  TEXT    NOT NULL,
    PRIMARY KEY (leaf_index),
    CONSTRAINT log_leaves_event UNIQUE (stream_id, seq)
);
CREATE TABLE IF NOT EXISTS log_nodes (
    level       INTEGER NOT NULL,
    node_index  BIGINT  NOT NULL,
    hash        BLOB    NOT NULL,
    PRIMARY KEY (level, node_index)
);
CREATE TABLE IF NOT EXISTS log_checkpoints (
    tree_size   BIGINT   NOT NULL,
    root_hash   BLOB     NOT NULL,
    note        TEXT     NOT NULL,
    signed_at   DATETIME NOT NULL,
    PRIMARY KEY (tree_size)
);
"""

# Device identity: every certificate the fleet CA signed, append-only (see the
# PostgreSQL revision 0009 for why it is kept).
_VERSION_9: Final = """
CREATE TABLE IF NOT EXISTS device_certificates (
    fingerprint  TEXT     NOT NULL,
    device_id    TEXT     NOT NULL,
    serial       TEXT     NOT NULL,
    key_digest   TEXT     NOT NULL,
    not_before   DATETIME NOT NULL,
    not_after    DATETIME NOT NULL,
    issued_at    DATETIME NOT NULL,
    certificate  TEXT     NOT NULL,
    PRIMARY KEY (fingerprint),
    CONSTRAINT device_certificates_serial UNIQUE (serial)
);
CREATE INDEX IF NOT EXISTS device_certificates_device
    ON device_certificates (device_id, issued_at);
CREATE INDEX IF NOT EXISTS device_certificates_expiry ON device_certificates (not_after);
CREATE TRIGGER IF NOT EXISTS device_certificates_no_update BEFORE UPDATE ON device_certificates
BEGIN SELECT RAISE(ABORT, 'device certificates are append-only'); END;
CREATE TRIGGER IF NOT EXISTS device_certificates_no_delete BEFORE DELETE ON device_certificates
BEGIN SELECT RAISE(ABORT, 'device certificates are append-only'); END;
"""

# Desired configuration and tracked commands (see the PostgreSQL revision 0010).
_VERSION_10: Final = """
CREATE TABLE IF NOT EXISTS config_layers (
    layer       TEXT NOT NULL,
    subject     TEXT NOT NULL,
    settings    TEXT NOT NULL,
    changed_at  TEXT NOT NULL,
    changed_by  TEXT NOT NULL,
    PRIMARY KEY (layer, subject)
);
CREATE TABLE IF NOT EXISTS device_config (
    device_id                TEXT    NOT NULL,
    model                    TEXT,
    clinic_id                TEXT,
    registered               BOOLEAN NOT NULL,
    decommissioned           BOOLEAN NOT NULL,
    last_service_actuations  INTEGER,
    desired_version          INTEGER NOT NULL,
    desired_digest           TEXT,
    desired_settings         TEXT,
    desired_at               TEXT,
    reported_version         INTEGER NOT NULL,
    reported_digest          TEXT,
    applied_at               TEXT,
    refused_version          INTEGER NOT NULL,
    refused_reason           TEXT,
    refused_at               TEXT,
    state                    TEXT,
    PRIMARY KEY (device_id)
);
CREATE INDEX IF NOT EXISTS device_config_state ON device_config (state);
CREATE INDEX IF NOT EXISTS device_config_clinic ON device_config (clinic_id);
CREATE TABLE IF NOT EXISTS device_commands (
    command_id   TEXT NOT NULL,
    device_id    TEXT NOT NULL,
    cmd          TEXT NOT NULL,
    args         TEXT NOT NULL,
    issued_by    TEXT NOT NULL,
    issued_at    TEXT NOT NULL,
    expires_at   TEXT NOT NULL,
    state        TEXT NOT NULL,
    answered_at  TEXT,
    expired_at   TEXT,
    reason       TEXT,
    detail       TEXT,
    result       TEXT NOT NULL,
    PRIMARY KEY (command_id)
);
CREATE INDEX IF NOT EXISTS device_commands_device ON device_commands (device_id, issued_at);
CREATE INDEX IF NOT EXISTS device_commands_state ON device_commands (state);
"""

# Alert e-mail (docs/alerts.md): each user's severities by e-mail, and the e-mail log.
_VERSION_11: Final = """
CREATE TABLE IF NOT EXISTS alert_email_preferences (
    user_id     TEXT     NOT NULL,
    severities  TEXT     NOT NULL,
    updated_at  DATETIME NOT NULL,
    PRIMARY KEY (user_id),
    FOREIGN KEY (user_id) REFERENCES users (user_id)
);
CREATE TABLE IF NOT EXISTS alert_emails (
    id               INTEGER  NOT NULL,
    user_id          TEXT     NOT NULL,
    event_id         TEXT     NOT NULL,
    alert_id         TEXT     NOT NULL,
    payload          TEXT     NOT NULL,
    attempts         INTEGER  NOT NULL,
    state            TEXT     NOT NULL,
    last_error       TEXT,
    next_attempt_at  DATETIME,
    delivered_at     DATETIME,
    created_at       DATETIME NOT NULL,
    PRIMARY KEY (id),
    CONSTRAINT alert_emails_once UNIQUE (user_id, event_id),
    FOREIGN KEY (user_id) REFERENCES users (user_id)
);
CREATE INDEX IF NOT EXISTS alert_emails_due ON alert_emails (state, next_attempt_at);
CREATE INDEX IF NOT EXISTS alert_emails_alert ON alert_emails (alert_id);
"""

_UPGRADES: Final = (
    _VERSION_1, _VERSION_2, _VERSION_3, _VERSION_4, _VERSION_5, _VERSION_6, _VERSION_7,
    _VERSION_8, _VERSION_9, _VERSION_10, _VERSION_11,
)  # fmt: skip
"""The script that brings a file from ``user_version`` N to N + 1 is ``_UPGRADES[N]``.

Every statement is ``IF NOT EXISTS``: two upgraders can both read the old version
before either takes the write lock, and the second must then change nothing."""

SCHEMA_VERSION: Final = len(_UPGRADES)


def upgrade_sqlite(path: Path, version: int = SCHEMA_VERSION) -> None:
    """Create or upgrade the schema of the database file at ``path`` to ``version``
    (idempotent; a file already there or beyond is left as it is)."""
    if not 1 <= version <= SCHEMA_VERSION:
        raise ValueError(f"SQLite schema versions run from 1 to {SCHEMA_VERSION}, not {version}")
    path.parent.mkdir(parents=True, exist_ok=True)
    with _closing(connect(path)) as connection:
        found = connection.execute("PRAGMA user_version").fetchone()[0]
        if found < version:
            # One transaction for every pending step: a crash leaves the old version whole.
            steps = "".join(_UPGRADES[found:version])
            connection.executescript(
                f"BEGIN IMMEDIATE; {steps} PRAGMA user_version = {version}; COMMIT;"
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
