"""People: named accounts and their dashboard sessions; machine tokens expire.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE users (
            user_id          text        NOT NULL,
            email            text        NOT NULL,
            display_name     text        NOT NULL,
            role             text        NOT NULL,
            clinic_id        text,
            password_hash    text,
            totp_sealed      text,
            totp_last_step   bigint,
            disabled         boolean     NOT NULL,
            failed_attempts  integer     NOT NULL,
            locked_until     timestamptz,
            created_at       timestamptz NOT NULL,
            updated_at       timestamptz NOT NULL,
            PRIMARY KEY (user_id),
            UNIQUE (email)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE web_sessions (
            session_digest  text        NOT NULL,
            user_id         text        NOT NULL,
            created_at      timestamptz NOT NULL,
            last_seen_at    timestamptz NOT NULL,
            expires_at      timestamptz NOT NULL,
            PRIMARY KEY (session_digest),
            FOREIGN KEY (user_id) REFERENCES users (user_id)
        )
        """
    )
    op.execute("CREATE INDEX web_sessions_user ON web_sessions (user_id)")
    op.execute(
        """
        CREATE TABLE api_token_expiry (
            token_id    text        NOT NULL,
            expires_at  timestamptz NOT NULL,
            PRIMARY KEY (token_id),
            FOREIGN KEY (token_id) REFERENCES api_tokens (token_id)
        )
        """
    )
    # Tokens made before expiry existed get a year from the upgrade: long enough for
    # no machine to stop at once, short enough that none lives for ever.
    op.execute(
        "INSERT INTO api_token_expiry (token_id, expires_at) "
        "SELECT token_id, now() + interval '365 days' FROM api_tokens"
    )
