"""Treatment sessions: list and detail (with cartridges and events)."""

from datetime import datetime
from typing import Annotated, Any, NoReturn

from fastapi import APIRouter, Path, Query, Response

from schemas.fields import CLINIC_ID_PATTERN, DEVICE_ID_PATTERN
from services.api.access import Principal
from services.api.deps import Db, SessionReader, Store
from services.api.models import SessionCartridge, SessionDetail, SessionOut
from services.api.pagination import (
    CursorParam,
    Limit,
    Page,
    decode_time_cursor,
    next_cursor,
    time_key,
)
from services.api.problems import ERROR_RESPONSES, bad_request, not_found
from services.api.queries import sessions as queries
from services.api.queries.evidence import Evidence, SessionSpan
from services.api.queries.scope import visible_events
from services.api.read_route import OneTripRead
from services.api.responses import JSON_MEDIA_TYPE
from services.api.routes.devices import event_out

# The list, which returns its own ``Response``, takes one trip through the thread pool.
router = APIRouter(
    prefix="/sessions", tags=["sessions"], responses=ERROR_RESPONSES, route_class=OneTripRead
)
_MAX_SESSION_EVENTS = 10_000

DeviceFilter = Annotated[str | None, Query(pattern=DEVICE_ID_PATTERN)]
ClinicFilter = Annotated[str | None, Query(pattern=CLINIC_ID_PATTERN)]
From = Annotated[datetime | None, Query(alias="from", description="Started at or after.")]
To = Annotated[datetime | None, Query(alias="to", description="Started before.")]


SessionSearch = Annotated[
    str | None,
    Query(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$",
        description=(
            "Search: the start of the session id, the device id, or the id or lot of "
            "the cartridge the session started with."
        ),
    ),
]
Flagged = Annotated[
    bool,
    Query(description="Only sessions whose counts did not reconcile or chain is broken."),
]


async def filtered(  # the session filters of the CSV export
    who: SessionReader,
    device_id: DeviceFilter = None,
    clinic_id: ClinicFilter = None,
    started_from: From = None,
    started_to: To = None,
    q: SessionSearch = None,
    flagged: Flagged = False,
) -> Any:
    return session_filter(who, device_id, clinic_id, started_from, started_to, q, flagged)


def session_filter(
    who: Principal,
    device_id: str | None,
    clinic_id: str | None,
    started_from: datetime | None,
    started_to: datetime | None,
    q: str | None,
    flagged: bool,
) -> Any:
    """The scoped query of the sessions the filters keep (400 for a time range that is
    empty or without a time zone)."""
    if started_from and started_to and started_to <= started_from:
        raise bad_request("`to` must be later than `from`")
    for moment, name in ((started_from, "from"), (started_to, "to")):
        if moment is not None and moment.tzinfo is None:
            raise bad_request(f"`{name}` needs a time zone, e.g. 2026-11-24T00:00:00Z")
    return queries.session_query(
        who, device_id=device_id, clinic_id=clinic_id,
        started_from=started_from, started_to=started_to, q=q, flagged=flagged,
    )  # fmt: skip


@router.get("", summary="List sessions", response_model=Page[SessionOut])
def list_sessions(  # noqa: PLR0913, PLR0917 - one query parameter each
    who: SessionReader,
    db: Db,
    cursor: CursorParam = None,
    limit: Limit = 100,
    device_id: DeviceFilter = None,
    clinic_id: ClinicFilter = None,
    started_from: From = None,
    started_to: To = None,
    q: SessionSearch = None,
    flagged: Flagged = False,
) -> Response:
    """Session audits, newest first."""
    query = session_filter(who, device_id, clinic_id, started_from, started_to, q, flagged)
    key = decode_time_cursor(cursor)
    rows = queries.session_rows(db, query, key, limit)
    following = next_cursor(rows, limit, lambda row: time_key(row["started_at"], row["session_id"]))
    return Response(queries.page_json(rows[:limit], following), media_type=JSON_MEDIA_TYPE)


@router.get("/{session_id}", summary="A session")
def get_session(
    who: SessionReader,
    db: Db,
    store: Store,
    session_id: Annotated[str, Path(max_length=64)],
) -> SessionDetail:
    """The session's audit, where it lies in the device's chain (first and last seq,
    their stored hashes, seal status), the cartridges it used and its events, each
    with the stored event verbatim: from its start through its end (through the
    newest while it is open), its own and those between that name no session.  A
    clinic sees, of the latter, those of its own custody: a session begun before a
    reassignment keeps its events, not the next holder's."""
    found = queries.find_session(db, who, session_id)
    if found is None:
        raise not_found("session")
    session, audit = found
    span, evidence = queries.session_evidence(db, who, session_id) or _gone()
    stored = store.read_stream(
        span.stream_id, from_seq=span.first_seq, to_seq=span.last_seq, limit=_MAX_SESSION_EVENTS
    )
    own = [event for event in map(event_out, stored) if _belongs(event.data, session_id)]
    events = visible_events(db, store, who, session.device_id, own)
    return SessionDetail(
        **session.model_dump(),
        end_reason=audit.get("end_reason"),
        actuations_counted=audit["actuations_counted"],
        actuations_reported=audit.get("actuations_reported"),
        first_seq=span.first_seq,
        last_seq=span.last_seq,
        first_hash=evidence.first_hash(span),
        last_hash=evidence.last_hash(span),
        seal_status=evidence.seal_status(span),
        cartridges=_cartridges(span, evidence, events),
        events=events,
    )


def _gone() -> NoReturn:
    raise not_found("session")  # between two reads: the same as never found


def _belongs(data: dict[str, Any], session_id: str) -> bool:
    return data.get("session_id") in (None, session_id)


def _cartridges(span: SessionSpan, evidence: Evidence, events: list[Any]) -> list[SessionCartridge]:
    actuations = dict.fromkeys(span.cartridge_ids, 0)
    cores = dict.fromkeys(span.cartridge_ids, 0)
    for event in events:
        if event.type == "cores.punched":
            cartridge = event.data["cartridge_id"]
            actuations[cartridge] = actuations.get(cartridge, 0) + event.data["actuations"]
            cores[cartridge] = cores.get(cartridge, 0) + event.data["cores"]
    return [
        SessionCartridge(
            cartridge_id=cartridge,
            actuations=actuations[cartridge],
            cores=count,
            core_diameter_mm=evidence.core_diameter(span, cartridge),
        )
        for cartridge, count in cores.items()
    ]
