"""The outbox file's tables, and bringing an older file forward.

``PRAGMA user_version`` numbers the layout: 0 is the v1 agent's (no delivery
columns), 1 adds end-to-end delivery (DESIGN §4.2), 2 the desired configuration
the device applied and the tracked commands it answered (protocol v1.2), 3 the
state of its safety interlocks, 4 a per-device *sent watermark* in place of each
row's ``sent_at`` (the column stays, no longer read or written).  Every step runs in one
``BEGIN IMMEDIATE`` transaction, so processes sharing a file migrate it once.
"""

import sqlite3
from typing import Final

SCHEMA_VERSION: Final = 4

_V0: Final = (
    """CREATE TABLE IF NOT EXISTS chain_heads (
        device_id  TEXT PRIMARY KEY,
        last_seq   INTEGER NOT NULL,
        last_hash  TEXT    NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS outbox (
        device_id   TEXT    NOT NULL,
        seq         INTEGER NOT NULL,
        wire        BLOB    NOT NULL,
        recorded_at TEXT    NOT NULL,
        sent_at     TEXT,
        PRIMARY KEY (device_id, seq)
    ) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS outbox_unsent ON outbox (device_id, seq) WHERE sent_at IS NULL",
    "CREATE INDEX IF NOT EXISTS outbox_sent ON outbox (sent_at) WHERE sent_at IS NOT NULL",
)

_V1: Final = (
    # The platform's hash-checked watermark: events up to it are delivered.
    "ALTER TABLE chain_heads ADD COLUMN acked_seq INTEGER NOT NULL DEFAULT 0",
    # Whether the chain is known to continue the platform's stream for the id.
    "ALTER TABLE chain_heads ADD COLUMN anchored INTEGER NOT NULL DEFAULT 0",
    # An open E-OUTBOX-FULL episode, so a restart neither raises it again nor
    # forgets to clear it.
    "ALTER TABLE chain_heads ADD COLUMN outbox_full INTEGER NOT NULL DEFAULT 0",
    # A v1 agent's chains started at genesis and were published as they grew: they
    # are the streams the platform holds, so they count as anchored.
    "UPDATE chain_heads SET anchored = 1",
    # Each distinct mismatching ack raises E-CHAIN-MISMATCH once, however often the
    # retained ack is delivered again.
    """CREATE TABLE IF NOT EXISTS ack_mismatches (
        device_id TEXT    NOT NULL,
        seq       INTEGER NOT NULL,
        hash      TEXT    NOT NULL,
        PRIMARY KEY (device_id, seq, hash)
    ) WITHOUT ROWID""",
)

_V2: Final = (
    # The configuration the device enforces, kept across restarts; and the last one
    # it refused, so a retained message delivered again is not refused twice.
    """CREATE TABLE IF NOT EXISTS applied_config (
        device_id        TEXT    PRIMARY KEY,
        version          INTEGER NOT NULL,
        digest           TEXT    NOT NULL,
        settings         TEXT    NOT NULL,
        refused_version  INTEGER NOT NULL DEFAULT 0,
        refused_digest   TEXT
    )""",
    # Tracked commands already answered: a command delivered twice (its persistent
    # session and a republish) runs once.
    """CREATE TABLE IF NOT EXISTS answered_commands (
        device_id   TEXT NOT NULL,
        command_id  TEXT NOT NULL,
        answered_at TEXT NOT NULL,
        PRIMARY KEY (device_id, command_id)
    ) WITHOUT ROWID""",
)

_V3: Final = (
    # The interlocks' state (``edge_agent.interlock_state``) as of ``through_seq``,
    # written with the events it accounts for: a restart resumes from it and the
    # events recorded after it, so a locked handpiece stays locked.
    """CREATE TABLE IF NOT EXISTS interlock_state (
        device_id    TEXT    PRIMARY KEY,
        through_seq  INTEGER NOT NULL,
        state        BLOB    NOT NULL
    )""",
)

_V4: Final = (
    # Every event up to ``sent_seq`` was taken by the broker (PUBACK) or acknowledged
    # by the platform: one column moved per acknowledged batch instead of an UPDATE
    # of each of its rows (and of the two partial indexes it moved them between).
    "ALTER TABLE chain_heads ADD COLUMN sent_seq INTEGER NOT NULL DEFAULT 0",
    # When the watermark passed each point: an event was sent at the time of the
    # first mark at or above its seq, which starts its resend window.
    """CREATE TABLE IF NOT EXISTS sent_marks (
        device_id    TEXT    NOT NULL,
        through_seq  INTEGER NOT NULL,
        sent_at      TEXT    NOT NULL,
        PRIMARY KEY (device_id, through_seq)
    ) WITHOUT ROWID""",
    # The sent prefix of each chain: up to the first unsent event (an event sent past
    # a gap goes once more, identical bytes, deduplicated by the platform).
    """UPDATE chain_heads SET sent_seq = max(acked_seq, coalesce(
        (SELECT min(o.seq) - 1 FROM outbox o
         WHERE o.device_id = chain_heads.device_id AND o.sent_at IS NULL), last_seq))""",
    # Each distinct send time of that prefix becomes a mark, so the resend windows of
    # events already sent run on from when they were sent.
    """INSERT OR IGNORE INTO sent_marks (device_id, through_seq, sent_at)
        SELECT o.device_id, max(o.seq), o.sent_at FROM outbox o
        JOIN chain_heads h ON h.device_id = o.device_id
        WHERE o.sent_at IS NOT NULL AND o.seq <= h.sent_seq
        GROUP BY o.device_id, o.sent_at""",
    "DROP INDEX IF EXISTS outbox_unsent",
    "DROP INDEX IF EXISTS outbox_sent",
)

_STEPS: Final = (_V0 + _V1, _V2, _V3, _V4)
"""Step ``n`` brings a file from version ``n`` to ``n + 1``.  A new file and a v1
agent's file are both at 0: the v1 tables are created where missing."""


def prepare(connection: sqlite3.Connection) -> None:
    """Create the tables of a new file, or migrate an older one forward."""
    if _version(connection) == SCHEMA_VERSION:
        return
    connection.execute("BEGIN IMMEDIATE")
    try:
        # Read again under the lock: another process may have just migrated it.
        for step in _STEPS[_version(connection) :]:
            for statement in step:
                connection.execute(statement)
        connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")


def _version(connection: sqlite3.Connection) -> int:
    return int(connection.execute("PRAGMA user_version").fetchone()[0])
