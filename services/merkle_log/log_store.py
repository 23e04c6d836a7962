"""Where the platform keeps its log: leaves, complete-subtree nodes and signed
checkpoints, in the event store's database, through SQLAlchemy Core on both backends.

A root or a proof reads only the O(log n) complete subtrees RFC 9162's recursion
visits (``services.transparency.needed_nodes`` names them), in one query.
"""

from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any, Final, NamedTuple, TypeVar

from sqlalchemy import Connection, Engine, delete, func, insert, select

from services.eventstore import Cursor, load_checkpoint, open_sql_engine, save_checkpoint
from services.merkle_log.errors import NotInLogError
from services.merkle_log.tables import LOG_FOLLOWER, log_checkpoints, log_leaves, log_nodes
from services.transparency import (
    CompactRange,
    Node,
    NodeId,
    NodeLookup,
    consistency_path,
    frontier_ids,
    inclusion_path,
    inclusion_paths,
    leaf_hash,
    needed_nodes,
    root_at,
)

T = TypeVar("T")
_CHUNK = 500  # rows per statement: SQLite's bound-parameter limit


class LoggedEvent(NamedTuple):
    leaf_index: int
    stream_id: str
    seq: int
    event_hash: str


@dataclass(frozen=True, slots=True)
class StoredCheckpoint:
    size: int
    root: bytes
    note: str
    signed_at: datetime


@dataclass(frozen=True, slots=True)
class InclusionProof:
    leaf_index: int
    tree_size: int
    event_hash: str
    path: list[bytes]


@dataclass(frozen=True, slots=True)
class LogPlacement:
    """Where one event stands in the log: its leaf, and the newest signed checkpoint."""

    leaf_index: int | None
    """``None`` until the projector's log keeper has logged the event."""
    checkpoint_size: int | None
    """The tree size of the newest signed checkpoint; ``None`` before the first."""

    @property
    def covered(self) -> bool:
        """Whether a signed checkpoint commits to the event (an inclusion proof exists)."""
        return (
            self.leaf_index is not None
            and self.checkpoint_size is not None
            and self.leaf_index < self.checkpoint_size
        )


class MerkleLog:
    """The log's tables on one database.  One writer at a time (the projector's log
    keeper, or a rebuild); any number of readers."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @classmethod
    def open(cls, url: str) -> "MerkleLog":
        return cls(open_sql_engine(url))

    def close(self) -> None:
        self.engine.dispose()

    # -- the tree ------------------------------------------------------------

    def position(self, connection: Connection | None = None) -> Cursor:
        """Where in the store's global order the log got to."""
        return self._with(connection, lambda found: load_checkpoint(found, LOG_FOLLOWER))

    def size(self, connection: Connection | None = None) -> int:
        return self._with(connection, _size)

    def compact_range(self, connection: Connection | None = None) -> CompactRange:
        def load(found: Connection) -> CompactRange:
            size = _size(found)
            nodes = _nodes(found, frontier_ids(size))
            return CompactRange.load(size, nodes.__getitem__)

        return self._with(connection, load)

    def write_batch(
        self,
        connection: Connection,
        leaves: Sequence[LoggedEvent],
        nodes: Sequence[Node],
        cursor: Cursor,
    ) -> None:
        """Add leaves and the nodes they complete, and move the log's place, inside the
        caller's transaction (a leaf index taken twice fails the whole of it)."""
        _insert_leaves(connection, leaves)
        _insert_nodes(connection, nodes)
        save_checkpoint(connection, LOG_FOLLOWER, cursor)

    def clear_tree(self, connection: Connection) -> None:
        """Forget every leaf and node (a rebuild starts from the events again)."""
        connection.execute(delete(log_nodes))
        connection.execute(delete(log_leaves))
        save_checkpoint(connection, LOG_FOLLOWER, Cursor.START)

    def root_at(self, size: int, connection: Connection | None = None) -> bytes:
        return self._with(connection, lambda found: _computed(found, lambda f: root_at(size, f)))

    def inclusion(self, stream_id: str, seq: int, size: int | None = None) -> InclusionProof:
        """The audit path of the event ``(stream_id, seq)`` in the tree of ``size``
        leaves (the whole log when ``None``)."""
        with self.engine.connect() as connection:
            row = connection.execute(
                select(log_leaves.c.leaf_index, log_leaves.c.event_hash).where(
                    log_leaves.c.stream_id == stream_id, log_leaves.c.seq == seq
                )
            ).first()
            tree_size = _size(connection) if size is None else size
            if row is None or row.leaf_index >= tree_size:
                raise NotInLogError(f"{stream_id} seq {seq} is not in the log of size {tree_size}")
            if tree_size > _size(connection):
                raise NotInLogError(f"the log has not reached size {tree_size}")
            index = int(row.leaf_index)
            path = _computed(connection, lambda found: inclusion_path(index, tree_size, found))
        return InclusionProof(index, tree_size, str(row.event_hash), path)

    def inclusions(
        self, stream_id: str, first_seq: int, last_seq: int, size: int, page: int = 500
    ) -> Iterator[tuple[int, InclusionProof]]:
        """(seq, audit path in the tree of ``size`` leaves) of each of the stream's
        events from ``first_seq`` to ``last_seq``, in seq order, a page at a time: one
        query for a page's leaves and one for the nodes all their paths need (a
        stream's neighbouring leaves share most of them).  Stops early at an event
        not in the tree; the caller holds the seqs to the events it has."""
        seq = first_seq
        while seq <= last_seq:
            with self.engine.connect() as connection:
                if size > _size(connection):
                    raise NotInLogError(f"the log has not reached size {size}")
                rows = connection.execute(
                    select(log_leaves.c.seq, log_leaves.c.leaf_index, log_leaves.c.event_hash)
                    .where(
                        log_leaves.c.stream_id == stream_id,
                        log_leaves.c.seq >= seq,
                        log_leaves.c.seq <= last_seq,
                        log_leaves.c.leaf_index < size,
                    )
                    .order_by(log_leaves.c.seq)
                    .limit(page)
                ).all()
                indexes = [int(row.leaf_index) for row in rows]
                paths = _computed(connection, partial(inclusion_paths, indexes, size))
            for row, index, path in zip(rows, indexes, paths, strict=True):
                yield int(row.seq), InclusionProof(index, size, str(row.event_hash), path)
            if len(rows) < page:
                return
            seq = int(rows[-1].seq) + 1

    def placement(self, stream_id: str, seq: int) -> LogPlacement:
        with self.engine.connect() as connection:
            leaf = connection.execute(
                select(log_leaves.c.leaf_index).where(
                    log_leaves.c.stream_id == stream_id, log_leaves.c.seq == seq
                )
            ).scalar()
            size = connection.execute(select(func.max(log_checkpoints.c.tree_size))).scalar()
        return LogPlacement(
            None if leaf is None else int(leaf), None if size is None else int(size)
        )

    def consistency(self, old_size: int, new_size: int) -> list[bytes]:
        """The RFC 9162 consistency proof from ``old_size`` to ``new_size`` leaves."""
        with self.engine.connect() as connection:
            if new_size > _size(connection):
                raise NotInLogError(f"the log has not reached size {new_size}")
            return _computed(connection, lambda found: consistency_path(old_size, new_size, found))

    def leaves(self, after_index: int = -1, limit: int = 10_000) -> list[LoggedEvent]:
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(log_leaves)
                .where(log_leaves.c.leaf_index > after_index)
                .order_by(log_leaves.c.leaf_index)
                .limit(limit)
            )
            return [LoggedEvent(int(row[0]), row[1], int(row[2]), row[3]) for row in rows]

    # -- checkpoints ---------------------------------------------------------

    def save_checkpoint(
        self, size: int, root: bytes, note: str, connection: Connection | None = None
    ) -> StoredCheckpoint:
        stored = StoredCheckpoint(size, root, note, datetime.now(UTC))
        row = {"tree_size": size, "root_hash": root, "note": note, "signed_at": stored.signed_at}
        if connection is None:
            with self.engine.begin() as own:
                own.execute(insert(log_checkpoints), row)
        else:
            connection.execute(insert(log_checkpoints), row)
        return stored

    def latest_checkpoint(self) -> StoredCheckpoint | None:
        with self.engine.connect() as connection:
            row = connection.execute(
                select(log_checkpoints).order_by(log_checkpoints.c.tree_size.desc()).limit(1)
            ).first()
        return None if row is None else _checkpoint(row)

    def checkpoint(self, size: int) -> StoredCheckpoint | None:
        with self.engine.connect() as connection:
            row = connection.execute(
                select(log_checkpoints).where(log_checkpoints.c.tree_size == size)
            ).first()
        return None if row is None else _checkpoint(row)

    def checkpoints(self, connection: Connection | None = None) -> list[StoredCheckpoint]:
        def every(found: Connection) -> list[StoredCheckpoint]:
            rows = found.execute(select(log_checkpoints).order_by(log_checkpoints.c.tree_size))
            return [_checkpoint(row) for row in rows]

        return self._with(connection, every)

    def delete_checkpoints(self, connection: Connection, sizes: Iterable[int]) -> None:
        connection.execute(
            delete(log_checkpoints).where(log_checkpoints.c.tree_size.in_(list(sizes)))
        )

    def _with(self, connection: Connection | None, run: Callable[[Connection], T]) -> T:
        if connection is not None:
            return run(connection)
        with self.engine.connect() as own:
            return run(own)


def _size(connection: Connection) -> int:
    highest = connection.execute(select(func.max(log_leaves.c.leaf_index))).scalar()
    return 0 if highest is None else int(highest) + 1


def _insert_leaves(connection: Connection, leaves: Sequence[LoggedEvent]) -> None:
    if not leaves:
        return
    if connection.dialect.name != "postgresql":
        connection.exec_driver_sql(_SQLITE_LEAVES, [tuple(leaf) for leaf in leaves])
        return
    # Numbers as one comma-separated text and hashes as one concatenated bytea, split
    # by the server: the driver then adapts a handful of values, not 40,000 (the
    # per-value adaptation was most of the log's cost on PostgreSQL).  A bytea, not a
    # text: substrings of a long text cost its length each (character scanning).
    connection.exec_driver_sql(
        _POSTGRES_LEAVES,
        {
            "first": leaves[0].leaf_index,
            "streams": [leaf.stream_id for leaf in leaves],
            "seqs": ",".join(str(leaf.seq) for leaf in leaves),
            "hashes": bytes.fromhex("".join(leaf.event_hash for leaf in leaves)),
        },
    )


def _insert_nodes(connection: Connection, nodes: Sequence[Node]) -> None:
    if not nodes:
        return
    if connection.dialect.name != "postgresql":
        rows = [(node.id.level, node.id.number, node.hash) for node in nodes]
        connection.exec_driver_sql(_SQLITE_NODES, rows)
        return
    connection.exec_driver_sql(
        _POSTGRES_NODES,
        {
            "levels": ",".join(str(node.id.level) for node in nodes),
            "numbers": ",".join(str(node.id.number) for node in nodes),
            "hashes": b"".join(node.hash for node in nodes),
        },
    )


# Leaves of one batch have consecutive indexes, from the first one's.
_POSTGRES_LEAVES: Final = """
INSERT INTO log_leaves (leaf_index, stream_id, seq, event_hash)
SELECT %(first)s::bigint + row - 1, stream_id, seq::bigint,
       encode(substring(%(hashes)s::bytea FROM (row::integer - 1) * 32 + 1 FOR 32), 'hex')
FROM unnest(%(streams)s::text[], string_to_array(%(seqs)s, ',')) WITH ORDINALITY
     AS given (stream_id, seq, row)
"""
_POSTGRES_NODES: Final = """
INSERT INTO log_nodes (level, node_index, hash)
SELECT level::integer, node_index::bigint,
       substring(%(hashes)s::bytea FROM (row::integer - 1) * 32 + 1 FOR 32)
FROM unnest(string_to_array(%(levels)s, ','), string_to_array(%(numbers)s, ','))
     WITH ORDINALITY AS given (level, node_index, row)
"""
_SQLITE_LEAVES: Final = (
    "INSERT INTO log_leaves (leaf_index, stream_id, seq, event_hash) VALUES (?, ?, ?, ?)"
)
_SQLITE_NODES: Final = "INSERT INTO log_nodes (level, node_index, hash) VALUES (?, ?, ?)"


def _nodes(connection: Connection, ids: Collection[NodeId]) -> dict[NodeId, bytes]:
    """The hashes of these complete subtrees: interior ones as stored, leaves from
    their event hashes."""
    found: dict[NodeId, bytes] = {}
    leaves = sorted(node.number for node in ids if node.level == 0)
    interior = sorted((node.level, node.number) for node in ids if node.level > 0)
    for start in range(0, len(leaves), _CHUNK):
        rows = connection.execute(
            select(log_leaves.c.leaf_index, log_leaves.c.event_hash).where(
                log_leaves.c.leaf_index.in_(leaves[start : start + _CHUNK])
            )
        )
        found.update(
            {NodeId(0, int(index)): leaf_hash(bytes.fromhex(hash_)) for index, hash_ in rows}
        )
    # One level at a time: SQLite does not search its primary key for a row-value IN
    # list (it scanned every node, per proof page), but does for ``level = ? AND
    # node_index IN (…)``.
    by_level: defaultdict[int, list[int]] = defaultdict(list)
    for level, number in interior:
        by_level[level].append(number)
    for level, numbers in by_level.items():
        for start in range(0, len(numbers), _CHUNK):
            stored = connection.execute(
                select(log_nodes.c.node_index, log_nodes.c.hash).where(
                    log_nodes.c.level == level,
                    log_nodes.c.node_index.in_(numbers[start : start + _CHUNK]),
                )
            )
            found.update({NodeId(level, int(index)): bytes(hash_) for index, hash_ in stored})
    return found


def _computed(connection: Connection, compute: Callable[[NodeLookup], T]) -> T:
    """``compute`` over the stored nodes it needs, fetched in one query."""
    nodes = _nodes(connection, needed_nodes(compute))
    return compute(nodes.__getitem__)


def _checkpoint(row: Any) -> StoredCheckpoint:
    signed_at = row.signed_at if row.signed_at.tzinfo else row.signed_at.replace(tzinfo=UTC)
    return StoredCheckpoint(int(row.tree_size), bytes(row.root_hash), row.note, signed_at)
