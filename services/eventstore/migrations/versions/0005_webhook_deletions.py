"""Webhooks can be deleted: a deleted webhook keeps its row (its delivery log still
names it) and gains a row here.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # IF NOT EXISTS as in 0003: a database whose delivery tables SQLAlchemy's
    # ``create_all`` made at run time may hold this one already.
    op.execute(
        """
        CREATE TABLE IF NOT EXISTS webhook_deletions (
            webhook_id  text        NOT NULL,
            deleted_at  timestamptz NOT NULL,
            PRIMARY KEY (webhook_id),
            FOREIGN KEY (webhook_id) REFERENCES webhooks (id)
        )
        """
    )
