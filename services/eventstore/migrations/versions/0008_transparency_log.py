"""The transparency log (DESIGN §11): leaves, complete-subtree nodes, signed checkpoints.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Leaves and nodes are rebuildable from the events (``coreline audit rebuild-log``);
    # checkpoints are not: they are what witnesses compare against.
    op.execute(
        """
        CREATE TABLE log_leaves (
            leaf_index  bigint NOT NULL,
            stream_id   text   NOT NULL,
            seq         bigint NOT NULL,
            event_hash  text   NOT NULL,
            PRIMARY KEY (leaf_index),
            CONSTRAINT log_leaves_event UNIQUE (stream_id, seq)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE log_nodes (
            level       integer NOT NULL,
            node_index  bigint  NOT NULL,
            hash        bytea   NOT NULL,
            PRIMARY KEY (level, node_index)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE log_checkpoints (
            tree_size  bigint      NOT NULL,
            root_hash  bytea       NOT NULL,
            note       text        NOT NULL,
            signed_at  timestamptz NOT NULL,
            PRIMARY KEY (tree_size)
        )
        """
    )
