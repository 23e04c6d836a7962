"""Notices into a delivery log (webhook deliveries, alert e-mails): one pending row per
notice and recipient, inserted once however often a batch is enqueued."""

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final

from sqlalchemy import Connection, Table
from sqlalchemy.dialects.postgresql import insert as postgres_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from services.delivery.notice import AlertNotice
from services.delivery.tables import DeliveryState

_CHUNK: Final = 500
"""Rows per INSERT: keeps SQLite under its bound-parameter limit."""


def pending(notice: AlertNotice, now: datetime) -> dict[str, Any]:
    """The columns every delivery log's new row has: the notice's exact bytes (every
    attempt sends the same), no attempt yet, due now."""
    return {
        "event_id": notice.event_id, "alert_id": notice.alert_id,
        "payload": notice.to_json().decode(), "attempts": 0,
        "state": DeliveryState.PENDING.value, "next_attempt_at": now, "created_at": now,
    }  # fmt: skip


def insert_new(
    connection: Connection, table: Table, rows: Sequence[dict[str, Any]], once: Sequence[str]
) -> int:
    """Inserts ``rows`` but those already there by the unique columns ``once``, and
    returns how many were new."""
    dialect_insert = postgres_insert if connection.dialect.name == "postgresql" else sqlite_insert
    new = 0
    for start in range(0, len(rows), _CHUNK):
        statement = dialect_insert(table).values(rows[start : start + _CHUNK])
        # Counted by RETURNING: the row count of a multi-row INSERT is not reliable
        # across drivers (psycopg reports 0).
        inserted = connection.execute(
            statement.on_conflict_do_nothing(index_elements=list(once)).returning(table.c.id)
        ).all()
        new += len(inserted)
    return new
