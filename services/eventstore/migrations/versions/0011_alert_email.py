"""Alert e-mail (docs/alerts.md): each user's choice of alert severities by e-mail,
and the log of the e-mails sent.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-09
"""

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE alert_email_preferences (
            user_id     text        NOT NULL,
            severities  text        NOT NULL,
            updated_at  timestamptz NOT NULL,
            PRIMARY KEY (user_id),
            FOREIGN KEY (user_id) REFERENCES users (user_id)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE alert_emails (
            id               bigserial   NOT NULL,
            user_id          text        NOT NULL,
            event_id         text        NOT NULL,
            alert_id         text        NOT NULL,
            payload          text        NOT NULL,
            attempts         integer     NOT NULL,
            state            text        NOT NULL,
            last_error       text,
            next_attempt_at  timestamptz,
            delivered_at     timestamptz,
            created_at       timestamptz NOT NULL,
            PRIMARY KEY (id),
            CONSTRAINT alert_emails_once UNIQUE (user_id, event_id),
            FOREIGN KEY (user_id) REFERENCES users (user_id)
        )
        """
    )
    op.execute("CREATE INDEX alert_emails_due ON alert_emails (state, next_attempt_at)")
    op.execute("CREATE INDEX alert_emails_alert ON alert_emails (alert_id)")
