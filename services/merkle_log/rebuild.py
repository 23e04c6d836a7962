"""Rebuilding the log from the events alone: anyone replaying the store in its global
order gets the same tree, so the rebuilt roots must equal every kept checkpoint's.

One transaction: readers see the old log or the new one, never a half-built tree;
a rebuild that contradicts a kept checkpoint is rolled back unless told to discard
those checkpoints (what repairing a damaged database needs, and what a witness
then notices: the checkpoints it kept will not be consistent with the new ones).
"""

from dataclasses import dataclass

from services.eventstore import Cursor, EventLog
from services.merkle_log.keeper import extend
from services.merkle_log.log_store import MerkleLog, StoredCheckpoint
from services.transparency import CompactRange


@dataclass(frozen=True, slots=True)
class RebuildResult:
    size: int
    root: bytes
    contradicted: tuple[StoredCheckpoint, ...]
    """Kept checkpoints the rebuilt tree does not reproduce (larger, or another root)."""
    applied: bool
    """Whether the rebuilt log replaced the old one."""


def rebuild_log(
    events: EventLog,
    merkle_log: MerkleLog,
    *,
    discard_contradicted: bool = False,
    batch_size: int = 20_000,
) -> RebuildResult:
    with merkle_log.engine.connect() as connection:
        transaction = connection.begin()
        try:
            merkle_log.clear_tree(connection)
            tree, cursor = CompactRange.empty(), Cursor.START
            while records := events.read_records(cursor, batch_size):
                leaves, nodes = extend(tree, records)
                cursor = records[-1].cursor
                merkle_log.write_batch(connection, leaves, nodes, cursor)
            contradicted = tuple(
                kept
                for kept in merkle_log.checkpoints(connection)
                if kept.size > tree.size or merkle_log.root_at(kept.size, connection) != kept.root
            )
            applied = not contradicted or discard_contradicted
            if contradicted and applied:
                merkle_log.delete_checkpoints(connection, [kept.size for kept in contradicted])
        except BaseException:
            transaction.rollback()
            raise
        if applied:
            transaction.commit()
        else:
            transaction.rollback()
    return RebuildResult(tree.size, tree.root(), contradicted, applied)
