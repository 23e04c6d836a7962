"""Alert e-mail: who wants which alerts by e-mail, and the log of what was sent.

Operator and user state, not derived from events: ``coreline db upgrade`` makes both
(migration 0011 and the SQLite schema's version 11), and
``tests/integration/test_migrations.py`` holds the two to these definitions.
"""

from typing import Final, NamedTuple

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    UniqueConstraint,
)

_MOMENT: Final = DateTime(timezone=True)
_ROW_ID: Final = BigInteger().with_variant(Integer(), "sqlite")


class EmailTables(NamedTuple):
    metadata: MetaData
    preferences: Table
    emails: Table
    users: Table
    """The columns of the people package's accounts that e-mail reads (never writes)."""


def email_tables() -> EmailTables:
    metadata = MetaData()
    # The people package's table (``services.api.people.tables``), which delivery may
    # not import: the API imports delivery.  Only what e-mail reads.
    users = Table(
        "users",
        metadata,
        Column("user_id", Text, primary_key=True),
        Column("email", Text, nullable=False),
        Column("role", Text, nullable=False),
        Column("clinic_id", Text),
        Column("disabled", Boolean, nullable=False),
    )
    preferences = Table(
        "alert_email_preferences",
        metadata,
        Column("user_id", Text, ForeignKey("users.user_id"), primary_key=True),
        # The severities the user wants by e-mail, comma-separated ("": none).
        Column("severities", Text, nullable=False),
        Column("updated_at", _MOMENT, nullable=False),
    )
    emails = Table(
        "alert_emails",
        metadata,
        Column("id", _ROW_ID, primary_key=True, autoincrement=True),
        Column("user_id", Text, ForeignKey("users.user_id"), nullable=False),
        Column("event_id", Text, nullable=False),
        Column("alert_id", Text, nullable=False),
        # The notice's bytes, so every attempt sends the same message.
        Column("payload", Text, nullable=False),
        Column("attempts", Integer, nullable=False),
        Column("state", Text, nullable=False),
        Column("last_error", Text),
        Column("next_attempt_at", _MOMENT),
        Column("delivered_at", _MOMENT),
        Column("created_at", _MOMENT, nullable=False),
        # Enqueueing a batch twice (a crash before the checkpoint moved) adds nothing.
        UniqueConstraint("user_id", "event_id", name="alert_emails_once"),
        Index("alert_emails_due", "state", "next_attempt_at"),
        Index("alert_emails_alert", "alert_id"),
    )
    return EmailTables(metadata, preferences, emails, users)


EMAIL_TABLES: Final = email_tables()
