"""The log's tables.  All three are made by ``coreline db upgrade`` (migration 0008
and the SQLite schema's version 8); these definitions are what queries them, and
``tests/integration/test_migrations.py`` holds the two to the same columns.

Leaves and nodes are rebuildable from the events alone (``coreline audit
rebuild-log``); the signed checkpoints are not (they are what witnesses compare
against), which is why the migrations own them all.
"""

from typing import Final

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Integer,
    LargeBinary,
    MetaData,
    Table,
    Text,
    UniqueConstraint,
)

metadata: Final = MetaData()

log_leaves: Final = Table(
    "log_leaves",
    metadata,
    # Position in the store's global order, from 0: the RFC 9162 leaf index.
    Column("leaf_index", BigInteger, primary_key=True, autoincrement=False),
    Column("stream_id", Text, nullable=False),
    Column("seq", BigInteger, nullable=False),
    # The event's hash (hex) as it was when logged; the leaf hash is derived from it.
    Column("event_hash", Text, nullable=False),
    UniqueConstraint("stream_id", "seq", name="log_leaves_event"),
)

log_nodes: Final = Table(
    "log_nodes",
    metadata,
    # The complete subtree of 2**level leaves from leaf node_index << level, level ≥ 1
    # (a leaf's hash comes from its event hash).  Written once, when the tree grows
    # past it, never changed.
    Column("level", Integer, primary_key=True, autoincrement=False),
    Column("node_index", BigInteger, primary_key=True, autoincrement=False),
    Column("hash", LargeBinary, nullable=False),
)

log_checkpoints: Final = Table(
    "log_checkpoints",
    metadata,
    Column("tree_size", BigInteger, primary_key=True, autoincrement=False),
    Column("root_hash", LargeBinary, nullable=False),
    # The whole signed note, exactly as served and published.
    Column("note", Text, nullable=False),
    Column("signed_at", DateTime(timezone=True), nullable=False),
)

LOG_FOLLOWER: Final = "transparency-log"
"""The log's place in the store's global order (a row of ``checkpoints``), moved in
the transaction that writes the leaves up to it."""
