"""Device seals (DESIGN §4.1): one row per verified batch seal, beside the events.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A seal signs the hash of its stream's event at ``seq``; the gateway stores it
    # only after it verified, in the transaction that stores (or finds) that event.
    # Resends carry the same seal again, hence the key.
    op.execute(
        """
        CREATE TABLE seals (
            stream_id  text        NOT NULL,
            seq        bigint      NOT NULL CHECK (seq >= 1),
            key_id     text        NOT NULL,
            sig        text        NOT NULL,
            stored_at  timestamptz NOT NULL,
            PRIMARY KEY (stream_id, seq)
        )
        """
    )
    # Append-only, as the events they seal.
    op.execute(
        "CREATE TRIGGER seals_append_only BEFORE UPDATE OR DELETE ON seals "
        "FOR EACH ROW EXECUTE FUNCTION coreline_refuse_change()"
    )
    op.execute(
        "CREATE TRIGGER seals_no_truncate BEFORE TRUNCATE ON seals "
        "FOR EACH STATEMENT EXECUTE FUNCTION coreline_refuse_change()"
    )
