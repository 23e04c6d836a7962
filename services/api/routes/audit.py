"""Audit: the session export as CSV, and chain verification of a device or session."""

from collections.abc import Iterator
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Query
from fastapi.responses import StreamingResponse

from schemas.fields import DEVICE_ID_PATTERN
from services.api.csv_export import csv_lines
from services.api.deps import Auditor, Context, Db, Store
from services.api.models import VerificationOut
from services.api.problems import ERROR_RESPONSES, bad_request, not_found
from services.api.queries import devices as device_queries
from services.api.queries import sessions as session_queries
from services.api.queries.verification import verify_device, verify_session
from services.api.routes.sessions import filtered

router = APIRouter(prefix="/audit", tags=["audit"], responses=ERROR_RESPONSES)
_CHUNK = 2000


@router.get(
    "/sessions.csv",
    summary="Export sessions as CSV",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {}}, "description": "RFC 4180 CSV, streamed"}},
)
def export_sessions(
    who: Auditor, api: Context, query: Annotated[Any, Depends(filtered)]
) -> StreamingResponse:
    """Every session matching the filters, newest first (start time, then session id,
    as the sessions list), one row each: the columns of a session in the JSON API,
    coverage rounded to 2 decimals, then its cartridges and their core diameters, its
    first and last seq, the stored hash of its last event and its seal status.
    Streamed with constant memory however many match."""
    del who  # the filters in ``query`` carry the scope

    def rows() -> Iterator[str]:
        # Its own connection: the response outlives the request's dependencies.
        with api.engine.connect() as connection:
            yield from csv_lines(session_queries.stream_export(connection, query, _CHUNK))

    return StreamingResponse(
        rows(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="coreline-sessions.csv"'},
    )


@router.get("/verify", summary="Verify a device's or a session's chain")
def verify(
    who: Auditor,
    db: Db,
    store: Store,
    device_id: Annotated[str | None, Query(pattern=DEVICE_ID_PATTERN)] = None,
    session_id: UUID | None = None,
) -> VerificationOut:
    """Recomputes the stored hash chain from the stored bytes (``coreline verify``).
    A session verifies when every link from its device's first event through its
    ``session.ended`` holds.  The status is the chain's; a clinic is shown only the
    findings at events it owns (DESIGN §9), never another clinic's."""
    if (device_id is None) == (session_id is None):
        raise bad_request("give exactly one of device_id and session_id")
    if session_id is not None:
        found = session_queries.find_session(db, who, str(session_id))
        if found is None:
            raise not_found("session")
        return verify_session(db, store, who, found[0].device_id, session_id)
    assert device_id is not None  # noqa: S101 - one of the two, checked above
    if not device_queries.device_visible(db, who, device_id):
        raise not_found("device")
    return verify_device(db, store, who, device_id)
