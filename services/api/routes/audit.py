"""Audit: the session export as CSV, chain verification of a device or session, and
evidence bundles (docs/evidence-bundle.md)."""

from collections.abc import Iterator
from typing import Annotated, Any, BinaryIO
from uuid import UUID

from fastapi import APIRouter, Depends, Query
from fastapi.responses import StreamingResponse

from schemas.fields import DEVICE_ID_PATTERN
from services.api.csv_export import export_csv
from services.api.deps import Auditor, Context, Db, Store
from services.api.models import VerificationOut
from services.api.problems import (
    ERROR_RESPONSES,
    bad_request,
    conflict,
    forbidden,
    not_found,
    unavailable,
)
from services.api.queries import devices as device_queries
from services.api.queries import sessions as session_queries
from services.api.queries.verification import verify_device, verify_session
from services.api.routes.sessions import filtered
from services.evidence import (
    ExportError,
    NothingToExportError,
    Scope,
    bundle_chunks,
    plan_export,
    write_export,
)
from services.merkle_log import LogKeyError, MerkleLog, load_verifier

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

    def rows() -> Iterator[str | bytes]:
        # Its own connection: the response outlives the request's dependencies.
        with api.engine.connect() as connection:
            yield from export_csv(connection, query, _CHUNK)

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


@router.get(
    "/evidence",
    summary="An evidence bundle of a session or a device",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"application/jsonl": {}}, "description": "streamed"},
        409: ERROR_RESPONSES[400] | {"description": "No checkpoint covers the events yet"},
        503: ERROR_RESPONSES[400] | {"description": "The log's key is not configured"},
    },
)
def evidence(
    who: Auditor,
    api: Context,
    store: Store,
    session_id: UUID | None = None,
    device_id: Annotated[str | None, Query(pattern=DEVICE_ID_PATTERN)] = None,
    from_time: Annotated[str | None, Query(alias="from")] = None,
    to_time: Annotated[str | None, Query(alias="to")] = None,
) -> StreamingResponse:
    """The ``coreline-evidence/v1`` bundle ``coreline audit export`` writes, streamed
    with constant memory; check it offline with ``coreline-verify``.  Fleet-wide
    auditors and the manufacturer only: a bundle holds the device's whole registry
    stream and every event of its range, whichever clinic held it (403 for a
    clinic-scoped token).  409 while the log has no checkpoint covering the events."""
    if who.clinic_id is not None:
        raise forbidden("evidence bundles are for fleet-wide auditors and the manufacturer")
    if (device_id is None) == (session_id is None) or (session_id and (from_time or to_time)):
        raise bad_request("give session_id, or device_id with optional from and to")
    scope = (
        Scope("session", session_id=str(session_id))
        if session_id is not None
        else Scope("device", device_id=device_id, from_time=from_time, to_time=to_time)
    )
    try:
        verifier = load_verifier(api.log_key.path, api.log_key.origin)
    except LogKeyError:
        raise unavailable("the log's verifier key is not configured") from None
    merkle_log = MerkleLog(api.engine)
    session_device = None
    if session_id is not None:
        # Where the read model says the session is: its device's stream is read, not
        # every stream (the plan still finds the session in the events themselves).
        with api.engine.connect() as db:
            found = session_queries.find_session(db, who, str(session_id))
        session_device = None if found is None else found[0].device_id
    try:
        plan = plan_export(store, merkle_log, verifier, scope, session_device=session_device)
    except NothingToExportError:
        raise not_found(scope.kind) from None
    except ExportError as error:
        raise conflict(str(error)) from None

    def write(out: BinaryIO) -> None:
        # Its own store: the response outlives the request's dependencies.
        with api.stores.borrow() as own:
            write_export(out, own, merkle_log, plan)

    name = session_id or device_id
    return StreamingResponse(
        bundle_chunks(write),
        media_type="application/jsonl",
        headers={"Content-Disposition": f'attachment; filename="coreline-evidence-{name}.jsonl"'},
    )
