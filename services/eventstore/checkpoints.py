"""Where each follower of the event store got to: the one road checkpoints take.

A checkpoint is read and moved over the caller's SQLAlchemy connection, so it
commits in the same transaction as the read-model rows (or deliveries) the events
up to it produced: a crash leaves both behind or both ahead, never one of them.
That is why the event store's port has no checkpoint methods of its own.
"""

from datetime import UTC, datetime
from typing import Final

from sqlalchemy import Connection, text

from schemas import utc_text
from services.eventstore.ports import Cursor

_LOAD: Final = text("SELECT commit_id, position FROM checkpoints WHERE name = :name")
_SAVE: Final = text(
    "INSERT INTO checkpoints (name, commit_id, position, updated_at) "
    "VALUES (:name, :commit, :position, :updated) "
    "ON CONFLICT (name) DO UPDATE SET commit_id = excluded.commit_id, "
    "position = excluded.position, updated_at = excluded.updated_at"
)


def load_checkpoint(connection: Connection, name: str) -> Cursor:
    """Where the follower ``name`` got to; ``Cursor.START`` if it never saved one."""
    row = connection.execute(_LOAD, {"name": name}).first()
    return Cursor(int(row[0]), int(row[1])) if row else Cursor.START


def save_checkpoint(connection: Connection, name: str, cursor: Cursor) -> None:
    """Move checkpoint ``name`` to ``cursor`` inside the caller's transaction."""
    connection.execute(
        _SAVE,
        {"name": name, "commit": cursor.commit, "position": cursor.position,
         "updated": utc_text(datetime.now(UTC))},
    )  # fmt: skip
