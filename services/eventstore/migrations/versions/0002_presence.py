"""Presence: each device's last known MQTT status.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # One row per device, overwritten in place: presence is the current state of a
    # retained MQTT status, not a history.
    op.execute(
        """
        CREATE TABLE presence (
            device_id    text        PRIMARY KEY,
            online       boolean     NOT NULL,
            changed_at   timestamptz NOT NULL
        )
        """
    )
