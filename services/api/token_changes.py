"""API tokens created and revoked by ``coreline token``, each change recorded as a
platform event in the token's own stream (``identity:token:{id}``) naming the
operator who made it.  Never the token nor its digest: the event has no field for
either.

Both commands leave no unrecorded change.  A revocation is recorded first, then
applied; if applying fails the command fails, and running it again sees the
revocation recorded already, records nothing twice, and applies it.  A token's id
exists only once its row is written, so creation writes the row, then records it;
if the record cannot be written, the token is revoked again before anyone has seen
it (the command prints it only after both), and the command fails.
"""

import getpass
import socket

from sqlalchemy import Engine

from schemas import utc_text
from schemas.streams import token_stream
from services.api.commands import record_change
from services.api.problems import Problem
from services.api.tokens import TokenError, TokenRecord, list_tokens, revoke_token
from services.eventstore import EventStore


def cli_operator() -> str:
    """The author of what an operator does on the command line: ``cli:user@host``."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no login name (a container without a passwd entry)
        user = "unknown"
    return f"cli:{user}@{socket.gethostname()}"[:200]


def record_token_created(
    store: EventStore, engine: Engine, record: TokenRecord, author: str
) -> None:
    """Record ``token.created`` for a token just written; if that fails, revoke the
    token (never shown to anyone) and raise ``TokenError``."""
    data = {
        "token_id": record.token_id,
        "role": record.role.value,
        "clinic_id": record.clinic_id,
        "label": record.label,
        "expires_at": None if record.expires_at is None else utc_text(record.expires_at),
    }
    try:
        record_change(store, token_stream(record.token_id), "token.created", data, author)
    except Exception as error:
        revoke_token(engine, record.token_id)
        raise TokenError(f"the token could not be recorded ({error}); it was revoked") from error


def revoke_recorded(store: EventStore, engine: Engine, token_id: str, author: str) -> None:
    """Record ``token.revoked`` (unless recorded already), then revoke the token."""
    if not any(r.token_id == token_id and r.revoked_at is None for r in list_tokens(engine)):
        raise TokenError(f"no live token {token_id!r} (see `coreline token list`)")
    recorded = store.read_stream(token_stream(token_id))
    if not recorded or recorded[-1].type != "token.revoked":
        after = recorded[-1].seq if recorded else 0
        try:
            record_change(
                store, token_stream(token_id), "token.revoked", {"token_id": token_id}, author,
                after_seq=after,
            )  # fmt: skip
        except Problem as problem:  # revoked by someone else at the same moment
            raise TokenError(problem.detail) from None
    revoke_token(engine, token_id)
