"""Chain custody: events held past a hole, outside the stream (DESIGN §4.2).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The columns of ``events`` without position and tx_id: a held event is in no
    # global order until it is promoted, and then the promoting transaction writes it
    # into ``events`` (which gives it that transaction's id).  Several candidates may
    # wait for one seq (two boards on one id), hence the hash in the key.
    op.execute(
        """
        CREATE TABLE held_events (
            stream_id    text        NOT NULL,
            device_id    text        NOT NULL,
            seq          bigint      NOT NULL CHECK (seq >= 1),
            event_id     uuid        NOT NULL,
            type         text        NOT NULL,
            occurred_at  timestamptz NOT NULL,
            received_at  timestamptz NOT NULL,
            hash         text        NOT NULL,
            prev_hash    text        NOT NULL,
            body         bytea       NOT NULL,
            PRIMARY KEY (stream_id, seq, hash)
        )
        """
    )
    # What operators look for first: the longest-waiting held events.
    op.execute("CREATE INDEX held_events_received ON held_events (received_at)")
    # A held row is deleted when it joins the stream or is refused, never changed.
    op.execute(
        """
        CREATE FUNCTION coreline_refuse_held_change() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'held events are never changed, only promoted or refused';
        END $$
        """
    )
    op.execute(
        "CREATE TRIGGER held_events_no_update BEFORE UPDATE ON held_events "
        "FOR EACH ROW EXECUTE FUNCTION coreline_refuse_held_change()"
    )
