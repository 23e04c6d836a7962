"""API bearer tokens: created and revoked by ``coreline token``, stored as digests.

A token is shown once, when it is created.  The database keeps its SHA-256 digest:
a token carries 256 random bits, so no one can search for a preimage, and a slow
password hash (made for guessable secrets) would only slow every request down.

``api_tokens`` is made by ``coreline db upgrade`` (the PostgreSQL migrations and the
SQLite schema); the definition here is what queries it, and
``tests/integration/test_migrations.py`` holds the two to the same columns.
"""

import hashlib
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from sqlalchemy import (
    Column,
    DateTime,
    Engine,
    MetaData,
    Table,
    Text,
    select,
    update,
)

from schemas.fields import CLINIC_ID_PATTERN
from services.api.access import Principal, Role, scope_problem

TOKEN_PREFIX: Final = "clt_"  # noqa: S105 - a marker, not a secret
_CLINIC_ID: Final = re.compile(CLINIC_ID_PATTERN)
_MAX_LABEL: Final = 120

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


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(
    engine: Engine, role: Role, clinic_id: str | None = None, label: str = ""
) -> tuple[TokenRecord, str]:
    """A new token: its record, and the token itself (returned this once)."""
    problem = scope_problem(role, clinic_id)
    if problem:
        raise TokenError(problem)
    if clinic_id is not None and not _CLINIC_ID.match(clinic_id):
        raise TokenError(f"--clinic {clinic_id!r}: letters, digits, '-' and '_', e.g. clinic-7")
    if len(label) > _MAX_LABEL:
        raise TokenError(f"--label is {len(label)} characters long; at most {_MAX_LABEL}")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    record = TokenRecord(
        token_id=uuid.uuid4().hex[:12],
        role=role,
        clinic_id=clinic_id,
        label=label or f"{role.value}{'@' + clinic_id if clinic_id else ''}",
        created_at=datetime.now(UTC),
        revoked_at=None,
    )
    with engine.begin() as connection:
        connection.execute(
            api_tokens.insert().values(
                token_id=record.token_id, digest=digest(token), role=role.value,
                clinic_id=clinic_id, label=record.label, created_at=record.created_at,
            )
        )  # fmt: skip
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
        rows = connection.execute(select(api_tokens).order_by(api_tokens.c.created_at)).mappings()
        return [
            TokenRecord(
                token_id=row["token_id"], role=Role(row["role"]), clinic_id=row["clinic_id"],
                label=row["label"], created_at=_aware(row["created_at"]),
                revoked_at=None if row["revoked_at"] is None else _aware(row["revoked_at"]),
            )
            for row in rows
        ]  # fmt: skip


def authenticate(engine: Engine, token: str) -> Principal | None:
    """The principal a presented token stands for; ``None`` for unknown or revoked."""
    if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
        return None
    with engine.connect() as connection:
        row = connection.execute(
            select(api_tokens.c.token_id, api_tokens.c.role, api_tokens.c.clinic_id,
                   api_tokens.c.label)
            .where(api_tokens.c.digest == digest(token), api_tokens.c.revoked_at.is_(None))
        ).first()  # fmt: skip
    if row is None:
        return None
    return Principal(token_id=row[0], role=Role(row[1]), clinic_id=row[2], label=row[3])


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
