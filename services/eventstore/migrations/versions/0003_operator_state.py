"""State no replay rebuilds: API tokens, webhooks and their delivery log, clinic
alert policies and the alert engine's book.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# Until this revision these tables were made at run time by SQLAlchemy's
# ``create_all``, from the same definitions, by whichever command touched them
# first; so a database at 0002 may hold some of them already, with rows that exist
# nowhere else.  Every statement is therefore IF NOT EXISTS, and each one is what
# ``create_all`` emitted (BIGSERIAL, json, PostgreSQL's own constraint names):
# a database carried forward and a fresh one end with the same schema.
# ``create_all`` made each module's tables in one transaction, so a table present
# here always came with its indexes; the index statements are IF NOT EXISTS anyway.
_STATEMENTS = (
    """
    CREATE TABLE IF NOT EXISTS api_tokens (
        token_id     text        NOT NULL,
        digest       text        NOT NULL,
        role         text        NOT NULL,
        clinic_id    text,
        label        text        NOT NULL,
        created_at   timestamptz NOT NULL,
        revoked_at   timestamptz,
        PRIMARY KEY (token_id),
        UNIQUE (digest)
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS webhooks (
        id             text        NOT NULL,
        clinic_id      text        NOT NULL,
        url            text        NOT NULL,
        secret_version integer     NOT NULL,
        created_at     timestamptz NOT NULL,
        active         boolean     NOT NULL,
        PRIMARY KEY (id)
    )
    """,
    "CREATE INDEX IF NOT EXISTS webhooks_clinic_active ON webhooks (clinic_id, active)",
    """
    CREATE TABLE IF NOT EXISTS webhook_deliveries (
        id               bigserial   NOT NULL,
        webhook_id       text        NOT NULL,
        event_id         text        NOT NULL,
        alert_id         text        NOT NULL,
        payload          text        NOT NULL,
        attempts         integer     NOT NULL,
        state            text        NOT NULL,
        last_status      integer,
        last_error       text,
        next_attempt_at  timestamptz,
        delivered_at     timestamptz,
        created_at       timestamptz NOT NULL,
        PRIMARY KEY (id),
        CONSTRAINT webhook_deliveries_once UNIQUE (webhook_id, event_id),
        FOREIGN KEY (webhook_id) REFERENCES webhooks (id)
    )
    """,
    "CREATE INDEX IF NOT EXISTS webhook_deliveries_due "
    "ON webhook_deliveries (state, next_attempt_at)",
    "CREATE INDEX IF NOT EXISTS webhook_deliveries_event ON webhook_deliveries (event_id)",
    """
    CREATE TABLE IF NOT EXISTS alert_conditions (
        device_id    text NOT NULL,
        rule         text NOT NULL,
        subject      text NOT NULL,
        alert_id     text NOT NULL,
        PRIMARY KEY (device_id, rule, subject)
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS alert_policies (
        clinic_id    text        NOT NULL,
        overrides    json        NOT NULL,
        updated_at   timestamptz NOT NULL,
        PRIMARY KEY (clinic_id)
    )
    """,
)


def upgrade() -> None:
    for statement in _STATEMENTS:
        op.execute(statement)
