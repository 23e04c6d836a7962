"""Audit: the session export as CSV, and chain verification of a device or session."""

from collections.abc import Iterator
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Query
from fastapi.responses import StreamingResponse

from schemas.fields import DEVICE_ID_PATTERN
from schemas.streams import device_stream
from services.api.csv_export import csv_lines
from services.api.deps import Auditor, Context, Db, Store
from services.api.models import FindingOut, VerificationOut
from services.api.problems import ERROR_RESPONSES, bad_request, not_found
from services.api.queries import devices as device_queries
from services.api.queries import sessions as session_queries
from services.api.routes.sessions import filtered
from services.audit.verify import audit_stream

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
    """Every session matching the filters, oldest first, one row each; the columns of
    a session in the JSON API.  Streamed with constant memory however many match."""
    del who  # the filters in ``query`` carry the scope

    def rows() -> Iterator[str]:
        # Its own connection: the response outlives the request's dependencies.
        with api.engine.connect() as connection:
            yield from csv_lines(session_queries.stream_rows(connection, query, _CHUNK))

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
    ``session.ended`` holds."""
    if (device_id is None) == (session_id is None):
        raise bad_request("give exactly one of device_id and session_id")
    if session_id is not None:
        found = session_queries.find_session(db, who, str(session_id))
        if found is None:
            raise not_found("session")
        session, _ = found
        audit = audit_stream(store, device_stream(session.device_id), session_id)
        verdict = audit.session_verdict()
        finding = verdict.finding
        return VerificationOut(
            device_id=session.device_id,
            session_id=str(session_id),
            status=verdict.status.value,
            events_checked=audit.events_checked,
            findings=[] if finding is None else [_finding(finding)],
        )
    assert device_id is not None  # noqa: S101 - one of the two, checked above
    if not device_queries.device_visible(db, who, device_id):
        raise not_found("device")
    audit = audit_stream(store, device_stream(device_id))
    return VerificationOut(
        device_id=device_id,
        session_id=None,
        status=audit.status.value,
        events_checked=audit.events_checked,
        findings=[_finding(finding) for finding in audit.findings],
    )


def _finding(finding: Any) -> FindingOut:
    return FindingOut(
        defect=finding.defect.value,
        seq=finding.seq,
        event_id=str(finding.event_id),
        detail=finding.detail,
    )
