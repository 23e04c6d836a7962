"""Dashboard sessions, kept on the server: the browser holds only a random id.

The database keeps the id's SHA-256 digest (256 random bits: no preimage search is
possible), so whoever reads the table cannot use a session.  A session ends when
its person logs out (the row is deleted: the cookie is dead from then on), after
``IDLE_TIMEOUT`` without a request, ``ABSOLUTE_TIMEOUT`` after sign-in whatever
happens, and when the account's password, role or status changes.
"""

import hashlib
import secrets
from datetime import UTC, datetime, timedelta
from typing import Final

from sqlalchemy import Connection, Engine, delete, select, update

from services.api.access import Principal
from services.api.people.account import user_from_row
from services.api.people.tables import users, web_sessions

IDLE_TIMEOUT: Final = timedelta(hours=2)
ABSOLUTE_TIMEOUT: Final = timedelta(hours=12)
_TOUCH_EVERY: Final = timedelta(minutes=1)
"""``last_seen_at`` is written at most this often, not on every page's live refresh."""
_MAX_ID_LENGTH: Final = 100


def session_digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def open_session(engine: Engine, user_id: str, now: datetime | None = None) -> str:
    """A new session for the user; returns its id, for the cookie only."""
    now = now or datetime.now(UTC)
    session_id = secrets.token_urlsafe(32)
    with engine.begin() as connection:
        # Sessions past their absolute end are swept here, where sessions are made.
        connection.execute(delete(web_sessions).where(web_sessions.c.expires_at <= now))
        connection.execute(
            web_sessions.insert().values(
                session_digest=session_digest(session_id), user_id=user_id, created_at=now,
                last_seen_at=now, expires_at=now + ABSOLUTE_TIMEOUT,
            )
        )  # fmt: skip
    return session_id


def session_principal(
    engine: Engine, session_id: str, now: datetime | None = None
) -> Principal | None:
    """The person a live session belongs to; ``None`` when it is unknown, ended, idle
    too long or its account is disabled."""
    if not session_id or len(session_id) > _MAX_ID_LENGTH:
        return None
    now = now or datetime.now(UTC)
    key = session_digest(session_id)
    with engine.connect() as connection:
        row = connection.execute(
            select(users, web_sessions.c.last_seen_at, web_sessions.c.expires_at)
            .join(web_sessions, web_sessions.c.user_id == users.c.user_id)
            .where(web_sessions.c.session_digest == key)
        ).mappings().first()  # fmt: skip
    if row is None or row["disabled"]:
        return None
    last_seen, expires = _aware(row["last_seen_at"]), _aware(row["expires_at"])
    if now >= expires or now - last_seen >= IDLE_TIMEOUT:
        close_session(engine, session_id)
        return None
    if now - last_seen >= _TOUCH_EVERY:
        with engine.begin() as connection:
            connection.execute(
                update(web_sessions)
                .where(web_sessions.c.session_digest == key)
                .values(last_seen_at=now)
            )
    return user_from_row(row).principal()


def close_session(engine: Engine, session_id: str) -> None:
    with engine.begin() as connection:
        connection.execute(
            delete(web_sessions).where(web_sessions.c.session_digest == session_digest(session_id))
        )


def revoke_sessions(connection: Connection, user_id: str) -> int:
    """End every session of the user (in the caller's transaction); how many ended."""
    return connection.execute(
        delete(web_sessions).where(web_sessions.c.user_id == user_id)
    ).rowcount


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
