"""API bearer tokens for machines: created, listed and revoked by ``coreline token``,
stored as digests, expiring (a year unless ``--expires-in`` says otherwise).

A token is shown once, when it is created.  The database keeps its SHA-256 digest:
a token carries 256 random bits, so no one can search for a preimage, and a slow
password hash (made for guessable secrets) would only slow every request down.

``api_tokens`` and ``api_token_expiry`` are made by ``coreline db upgrade`` (the
PostgreSQL migrations and the SQLite schema); the definitions here are what query
them, and ``tests/integration/test_migrations.py`` holds the two to the same columns.
"""

import hashlib
import re
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Final

from sqlalchemy import (
    Column,
    Connection,
    DateTime,
    Engine,
    ForeignKey,
    MetaData,
    Table,
    Text,
    bindparam,
    select,
    update,
)

from schemas.fields import CLINIC_ID_PATTERN
from services.api.access import Principal, Role, scope_problem

TOKEN_PREFIX: Final = "clt_"  # noqa: S105 - a marker, not a secret
_CLINIC_ID: Final = re.compile(CLINIC_ID_PATTERN)
_MAX_LABEL: Final = 120
DEFAULT_LIFETIME: Final = timedelta(days=365)
"""How long a token lives unless created with ``--expires-in``."""
MAX_LIFETIME: Final = timedelta(days=5 * 365)
_LIFETIME: Final = re.compile(r"(\d{1,5})([hdw])")
_UNITS: Final = {"h": timedelta(hours=1), "d": timedelta(days=1), "w": timedelta(weeks=1)}

api_tokens: Final = Table(
    "api_tokens",
    MetaData(),
    Column("token_id", Text, primary_key=True),
    Column("digest", Text, nullable=False, unique=True),
    Column("role", Text, nullable=False),
    Column("clinic_id", Text),
    Column("label", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True)),
)
# Expiry in a table of its own, one row per token: SQLite has no ADD COLUMN IF NOT
# EXISTS, and every schema step must be safe to run twice (``sqlite_schema``).  The
# migration gives each older token a year from the upgrade; a token without a row
# here is refused as expired.
api_token_expiry: Final = Table(
    "api_token_expiry",
    api_tokens.metadata,
    Column("token_id", Text, ForeignKey("api_tokens.token_id"), primary_key=True),
    Column("expires_at", DateTime(timezone=True), nullable=False),
)


_with_expiry: Final = api_tokens.outerjoin(
    api_token_expiry, api_token_expiry.c.token_id == api_tokens.c.token_id
)


class TokenError(ValueError):
    """A token that cannot be created or revoked as asked; the message says why."""


@dataclass(frozen=True, slots=True)
class TokenRecord:
    token_id: str
    role: Role
    clinic_id: str | None
    label: str
    created_at: datetime
    revoked_at: datetime | None
    expires_at: datetime | None

    def live(self, now: datetime) -> bool:
        return self.revoked_at is None and self.expires_at is not None and now < self.expires_at


class TokenRefusal(StrEnum):
    """Why a presented token stands for no one; the value is the 401's detail."""

    UNKNOWN = "the token is unknown"
    REVOKED = "the token was revoked"
    EXPIRED = "the token expired (create a new one with `coreline token create`)"


def parse_lifetime(text: str) -> timedelta:
    """``90d``, ``12h`` or ``52w``: how long a new token lives."""
    match = _LIFETIME.fullmatch(text.strip())
    if match is None:
        raise TokenError(f"--expires-in {text!r}: a number and h, d or w, e.g. 90d")
    lifetime = int(match[1]) * _UNITS[match[2]]
    if not timedelta(hours=1) <= lifetime <= MAX_LIFETIME:
        raise TokenError(f"--expires-in {text!r}: between 1h and {MAX_LIFETIME.days}d")
    return lifetime


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(
    engine: Engine,
    role: Role,
    clinic_id: str | None = None,
    label: str = "",
    lifetime: timedelta = DEFAULT_LIFETIME,
) -> tuple[TokenRecord, str]:
    """A new token: its record, and the token itself (returned this once)."""
    problem = scope_problem(role, clinic_id)
    if problem:
        raise TokenError(problem)
    if clinic_id is not None and not _CLINIC_ID.match(clinic_id):
        raise TokenError(f"--clinic {clinic_id!r}: letters, digits, '-' and '_', e.g. clinic-7")
    if len(label) > _MAX_LABEL:
        raise TokenError(f"--label is {len(label)} characters long; at most {_MAX_LABEL}")
    if not timedelta(0) < lifetime <= MAX_LIFETIME:
        raise TokenError(f"a token lives at most {MAX_LIFETIME.days} days")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    now = datetime.now(UTC)
    record = TokenRecord(
        token_id=uuid.uuid4().hex[:12],
        role=role,
        clinic_id=clinic_id,
        label=label or f"{role.value}{'@' + clinic_id if clinic_id else ''}",
        created_at=now,
        revoked_at=None,
        expires_at=now + lifetime,
    )
    with engine.begin() as connection:
        connection.execute(
            api_tokens.insert().values(
                token_id=record.token_id, digest=digest(token), role=role.value,
                clinic_id=clinic_id, label=record.label, created_at=record.created_at,
            )
        )  # fmt: skip
        connection.execute(
            api_token_expiry.insert().values(token_id=record.token_id, expires_at=now + lifetime)
        )
    return record, token


def revoke_token(engine: Engine, token_id: str) -> None:
    """Refuse the token from now on (the record stays, for the audit trail)."""
    with engine.begin() as connection:
        changed = connection.execute(
            update(api_tokens)
            .where(api_tokens.c.token_id == token_id, api_tokens.c.revoked_at.is_(None))
            .values(revoked_at=datetime.now(UTC))
        ).rowcount
    if not changed:
        raise TokenError(f"no live token {token_id!r} (see `coreline token list`)")


def list_tokens(engine: Engine) -> list[TokenRecord]:
    with engine.connect() as connection:
        rows = connection.execute(
            select(api_tokens, api_token_expiry.c.expires_at)
            .select_from(_with_expiry)
            .order_by(api_tokens.c.created_at)
        ).mappings()
        return [
            TokenRecord(
                token_id=row["token_id"], role=Role(row["role"]), clinic_id=row["clinic_id"],
                label=row["label"], created_at=_aware(row["created_at"]),
                revoked_at=_optional_aware(row["revoked_at"]),
                expires_at=_optional_aware(row["expires_at"]),
            )
            for row in rows
        ]  # fmt: skip


TOKEN_LOOKUP: Final = (
    select(api_tokens.c.token_id, api_tokens.c.role, api_tokens.c.clinic_id,
           api_tokens.c.label, api_tokens.c.revoked_at, api_token_expiry.c.expires_at)
    .select_from(_with_expiry)
    .where(api_tokens.c.digest == bindparam("digest"))
)  # fmt: skip
"""Built once: every request runs it (alone, or inside a hot read's statement, whose
row then ends with these columns).  Read afresh each time (no cache), so a token
revoked by ``coreline token revoke`` in another process is refused at once."""


def lookup_digest(token: str) -> str | None:
    """What ``TOKEN_LOOKUP`` looks ``token`` up by; ``None`` for a token of no shape we
    issue, which stands for no one without a look."""
    if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
        return None
    return digest(token)


def authenticate(database: Engine | Connection, token: str) -> Principal | TokenRefusal:
    """The principal a presented token stands for, or why it stands for no one.  With
    a connection (the request's own), the lookup is one more statement on it."""
    wanted = lookup_digest(token)
    if wanted is None:
        return TokenRefusal.UNKNOWN
    if isinstance(database, Connection):
        row = database.execute(TOKEN_LOOKUP, {"digest": wanted}).first()
    else:
        with database.connect() as connection:
            row = connection.execute(TOKEN_LOOKUP, {"digest": wanted}).first()
    return token_principal(row)


def token_principal(row: Sequence[Any] | None) -> Principal | TokenRefusal:
    """The principal ``TOKEN_LOOKUP``'s row (its columns in order) stands for, or why it
    stands for no one; ``None``: no row."""
    if row is None:
        return TokenRefusal.UNKNOWN
    if row[4] is not None:
        return TokenRefusal.REVOKED
    expires_at = _optional_aware(row[5])
    if expires_at is None or datetime.now(UTC) >= expires_at:
        return TokenRefusal.EXPIRED
    return Principal(subject_id=row[0], role=Role(row[1]), clinic_id=row[2], label=row[3])


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _optional_aware(moment: datetime | None) -> datetime | None:
    return None if moment is None else _aware(moment)
