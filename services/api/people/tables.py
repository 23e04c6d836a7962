"""The people tables: accounts and their dashboard sessions.

Both are made by ``coreline db upgrade`` (migration 0006 and the SQLite schema's
version 6); these definitions are what queries them, and
``tests/integration/test_migrations.py`` holds the two to the same columns.
"""

from typing import Final

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
)

metadata: Final = MetaData()

users: Final = Table(
    "users",
    metadata,
    Column("user_id", Text, primary_key=True),
    Column("email", Text, nullable=False, unique=True),
    Column("display_name", Text, nullable=False),
    Column("role", Text, nullable=False),
    Column("clinic_id", Text),
    # argon2id; ``NULL``: the account signs in by single sign-on only.
    Column("password_hash", Text),
    # The TOTP secret sealed with the platform's secret key, never in clear.
    Column("totp_sealed", Text),
    # The last step whose code was accepted: a code is good once.
    Column("totp_last_step", BigInteger),
    Column("disabled", Boolean, nullable=False),
    Column("failed_attempts", Integer, nullable=False),
    Column("locked_until", DateTime(timezone=True)),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

web_sessions: Final = Table(
    "web_sessions",
    metadata,
    # SHA-256 of the cookie's random id: a database dump opens no session.
    Column("session_digest", Text, primary_key=True),
    Column("user_id", Text, ForeignKey("users.user_id"), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("last_seen_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Index("web_sessions_user", "user_id"),
)
