"""Events, dead letters, checkpoints and heartbeats.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from alembic import op
from sqlalchemy import text

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE events (
            position     bigint GENERATED ALWAYS AS IDENTITY,
            tx_id        xid8        NOT NULL DEFAULT pg_current_xact_id(),
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
            PRIMARY KEY (stream_id, seq)
        )
        """
    )
    # Subscribers read in (tx_id, position) order; see services/eventstore/postgres.py.
    op.execute("CREATE INDEX events_global_order ON events (tx_id, position)")
    op.execute("CREATE INDEX events_device_time ON events (device_id, occurred_at)")
    op.execute(
        """
        CREATE FUNCTION coreline_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'events are append-only: % refused', TG_OP;
        END $$
        """
    )
    op.execute(
        "CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON events "
        "FOR EACH ROW EXECUTE FUNCTION coreline_refuse_change()"
    )
    op.execute(
        "CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events "
        "FOR EACH STATEMENT EXECUTE FUNCTION coreline_refuse_change()"
    )
    op.execute(
        """
        CREATE TABLE dead_letters (
            id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            received_at  timestamptz NOT NULL,
            topic        text        NOT NULL,
            reason       text        NOT NULL,
            detail       text        NOT NULL,
            device_id    text,
            seq          bigint,
            raw          bytea       NOT NULL,
            raw_size     integer     NOT NULL
        )
        """
    )
    op.execute("CREATE INDEX dead_letters_device ON dead_letters (device_id, received_at)")
    op.execute(
        """
        CREATE TABLE checkpoints (
            name         text PRIMARY KEY,
            commit_id    bigint      NOT NULL,
            position     bigint      NOT NULL,
            updated_at   timestamptz NOT NULL
        )
        """
    )
    _create_heartbeats()


def _create_heartbeats() -> None:
    timescale = _enable_timescale()
    op.execute(
        f"""
        CREATE TABLE heartbeats (
            device_id     text        NOT NULL,
            sampled_at    timestamptz NOT NULL,
            received_at   timestamptz NOT NULL,
            battery_pct   double precision,
            temperature_c double precision,
            uptime_s      bigint,
            rssi_dbm      double precision
        ) {"" if timescale else "PARTITION BY RANGE (sampled_at)"}
        """
    )
    op.execute("CREATE INDEX heartbeats_device_time ON heartbeats (device_id, sampled_at DESC)")
    if timescale:
        op.execute(
            "SELECT create_hypertable('heartbeats', 'sampled_at', "
            "chunk_time_interval => interval '1 day')"
        )
        op.execute(
            "ALTER TABLE heartbeats SET (timescaledb.compress, "
            "timescaledb.compress_segmentby = 'device_id', "
            "timescaledb.compress_orderby = 'sampled_at DESC')"
        )
        op.execute("SELECT add_compression_policy('heartbeats', interval '7 days')")
        op.execute("SELECT add_retention_policy('heartbeats', interval '180 days')")
        return
    # Plain PostgreSQL: monthly native partitions, a default partition so that no
    # sample is ever refused, and a function operators (and the gateway) call to
    # keep partitions ahead of time.  Retention = detaching and archiving a month.
    op.execute("CREATE TABLE heartbeats_default PARTITION OF heartbeats DEFAULT")
    op.execute(
        """
        CREATE FUNCTION coreline_ensure_heartbeat_partitions(months_ahead integer DEFAULT 2)
        RETURNS void LANGUAGE plpgsql AS $$
        DECLARE
            first_month date := date_trunc('month', now())::date;
            lower_bound date;
            partition_name text;
        BEGIN
            FOR i IN 0..months_ahead LOOP
                lower_bound := (first_month + make_interval(months => i))::date;
                partition_name := format('heartbeats_%s', to_char(lower_bound, 'YYYYMM'));
                IF to_regclass(partition_name) IS NULL THEN
                    EXECUTE format(
                        'CREATE TABLE %I PARTITION OF heartbeats FOR VALUES FROM (%L) TO (%L)',
                        partition_name, lower_bound, (lower_bound + interval '1 month')::date
                    );
                END IF;
            END LOOP;
        END $$
        """
    )
    op.execute("SELECT coreline_ensure_heartbeat_partitions(2)")


def _enable_timescale() -> bool:
    """Use TimescaleDB when the server offers it and it loads; it is never required."""
    bind = op.get_bind()
    offered = bind.execute(
        text("SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb')")
    ).scalar()
    if not offered:
        return False
    # Offered is not loadable (it needs shared_preload_libraries): try inside a
    # savepoint and fall back to plain PostgreSQL if it refuses.
    savepoint = bind.begin_nested()
    try:
        bind.execute(text("CREATE EXTENSION IF NOT EXISTS timescaledb"))
    except Exception:  # noqa: BLE001 - any refusal means "not here"
        savepoint.rollback()
        return False
    savepoint.commit()
    return True
