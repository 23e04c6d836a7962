"""Desired configuration and tracked commands (docs/device-configuration.md): the
configuration delivery loop's layers, per-device state and commands.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-08
"""

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Written only by the delivery loop (``coreline projector``), with its checkpoint;
    # rebuilt by folding the store again from the start (after clearing them and the
    # ``config-delivery`` checkpoint).  Times are RFC 3339 text, as events carry them.
    op.execute(
        """
        CREATE TABLE config_layers (
            layer       text NOT NULL,
            subject     text NOT NULL,
            settings    text NOT NULL,
            changed_at  text NOT NULL,
            changed_by  text NOT NULL,
            PRIMARY KEY (layer, subject)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE device_config (
            device_id                text    NOT NULL,
            model                    text,
            clinic_id                text,
            registered               boolean NOT NULL,
            decommissioned           boolean NOT NULL,
            last_service_actuations  bigint,
            desired_version          integer NOT NULL,
            desired_digest           text,
            desired_settings         text,
            desired_at               text,
            reported_version         integer NOT NULL,
            reported_digest          text,
            applied_at               text,
            refused_version          integer NOT NULL,
            refused_reason           text,
            refused_at               text,
            state                    text,
            PRIMARY KEY (device_id)
        )
        """
    )
    op.execute("CREATE INDEX device_config_state ON device_config (state)")
    op.execute("CREATE INDEX device_config_clinic ON device_config (clinic_id)")
    op.execute(
        """
        CREATE TABLE device_commands (
            command_id   text NOT NULL,
            device_id    text NOT NULL,
            cmd          text NOT NULL,
            args         text NOT NULL,
            issued_by    text NOT NULL,
            issued_at    text NOT NULL,
            expires_at   text NOT NULL,
            state        text NOT NULL,
            answered_at  text,
            expired_at   text,
            reason       text,
            detail       text,
            result       text NOT NULL,
            PRIMARY KEY (command_id)
        )
        """
    )
    op.execute("CREATE INDEX device_commands_device ON device_commands (device_id, issued_at)")
    op.execute("CREATE INDEX device_commands_state ON device_commands (state)")

