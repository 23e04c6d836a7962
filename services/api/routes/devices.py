"""Devices: list, detail, event history, register, assign, record service."""

from enum import StrEnum
from typing import Annotated, Any, Final
from urllib.parse import urlencode

import orjson
from fastapi import APIRouter, Path, Query, Response, status
from sqlalchemy import Connection

from schemas.fields import CLINIC_ID_PATTERN, DEVICE_ID_PATTERN
from schemas.streams import device_stream
from services.api import commands
from services.api.access import Action
from services.api.deps import Db, DeviceManager, DeviceReader, Store, admitted
from services.api.models import (
    Accepted,
    AssignDevice,
    DeviceDetail,
    DeviceOut,
    DeviceStatus,
    EventOut,
    RecordService,
    RegisterDevice,
    UsageDay,
)
from services.api.pagination import (
    CursorParam,
    Limit,
    Page,
    decode_cursor,
    encode_cursor,
    next_cursor,
)
from services.api.problems import ERROR_RESPONSES, conflict, not_found
from services.api.queries import devices as queries
from services.api.queries.scope import visible_events
from services.api.read_route import OneTripRead, one_statement
from services.api.responses import json_body, page_body
from services.eventstore import StoredEvent

# The reads that return their own ``Response`` take one trip through the thread pool.
router = APIRouter(
    prefix="/devices", tags=["devices"], responses=ERROR_RESPONSES, route_class=OneTripRead
)
DevicePath = Annotated[str, Path(pattern=DEVICE_ID_PATTERN, examples=["HP-000123"])]
NDJSON_MEDIA_TYPE: Final = "application/x-ndjson"
SearchTerm = Annotated[
    str | None,
    Query(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:/-]*$",
        description="Search: the start of the device id or of the serial it enrolled with.",
    ),
]


@router.get("", summary="List devices", response_model=Page[DeviceOut])
def list_devices(  # noqa: PLR0913, PLR0917 - one query parameter each
    who: DeviceReader,
    db: Db,
    clinic_id: Annotated[str | None, Query(pattern=CLINIC_ID_PATTERN)] = None,
    status: DeviceStatus | None = None,
    firmware: Annotated[str | None, Query(max_length=64)] = None,
    q: SearchTerm = None,
    cursor: CursorParam = None,
    limit: Limit = 100,
) -> Response:
    """Devices in serial order, filtered by clinic, status and firmware version, and by
    `q`: the start of the device id (any case) or of its enrolled serial."""
    after = decode_cursor(cursor, (str,))
    items = queries.list_devices(
        db, who, clinic_id=clinic_id, status=status, firmware=firmware,
        after=None if after is None else after[0], limit=limit, q=q,
    )  # fmt: skip
    following = next_cursor(items, limit, lambda item: [item["device_id"]])
    return page_body(items[:limit], following)


def _device_by_token(
    db: Connection, token_digest: str, action: Action, values: dict[str, Any]
) -> Response:
    """``get_device`` for a bearer token, looked up in the device's own statement."""
    token, row = queries.find_device_by_token(db, token_digest, values["device_id"])
    who = admitted(token, action)
    if row is None:
        raise not_found("device")
    return json_body(queries.device_detail(db, who, row))


@router.get("/{device_id}", summary="A device", response_model=DeviceDetail)
@one_statement(_device_by_token)
def get_device(who: DeviceReader, db: Db, device_id: DevicePath) -> Response:
    found = queries.find_device(db, who, device_id)
    if found is None:
        raise not_found("device")
    return json_body(found)


@router.get("/{device_id}/usage", summary="A device's daily usage")
def get_usage(
    who: DeviceReader,
    db: Db,
    device_id: DevicePath,
    days: Annotated[int, Query(ge=1, le=366)] = 30,
) -> list[UsageDay]:
    """Sessions and cores per UTC day, oldest first, today included."""
    if not queries.device_visible(db, who, device_id):
        raise not_found("device")
    return queries.daily_usage(db, who, device_id, days)


class EventFormat(StrEnum):
    JSON = "json"
    NDJSON = "ndjson"


@router.get(
    "/{device_id}/events",
    summary="A device's event history",
    response_model=Page[EventOut],
    responses={
        200: {
            "content": {NDJSON_MEDIA_TYPE: {}},
            "description": "With `format=ndjson`: one stored event per line, its bytes "
            "exactly as stored with `hash` appended; the next page in the `Link` header.",
        }
    },
)
def list_events(
    who: DeviceReader,
    db: Db,
    store: Store,
    device_id: DevicePath,
    cursor: CursorParam = None,
    limit: Limit = 100,
    shape: Annotated[EventFormat, Query(alias="format")] = EventFormat.JSON,
) -> Any:
    """The device's own events in seq order, as it sent them (hash-chained); each item's
    ``event`` is the stored event verbatim, so its hash can be recomputed.  A clinic
    (and an auditor of one clinic) sees the device while it holds it, and of its
    history what the clinic owns: the events of its intervals and of its sessions
    (DESIGN §9).  What the device did at another clinic (that clinic's session ids
    among them) stays that clinic's, so a page may hold fewer items than ``limit``
    and still have a next one."""
    if not queries.device_visible(db, who, device_id):
        raise not_found("device")
    after = decode_cursor(cursor, (int,))
    from_seq = 1 if after is None else after[0] + 1
    stored = store.read_stream(device_stream(device_id), from_seq=from_seq, limit=limit + 1)
    page = stored[:limit]
    items = visible_events(db, store, who, device_id, [event_out(event) for event in page])
    following = encode_cursor([page[-1].seq]) if len(stored) > limit else None
    if shape is EventFormat.JSON:
        return Page(items=items, next_cursor=following)
    shown = {item.seq for item in items}
    lines = b"".join(stored_line(event) for event in page if event.seq in shown)
    headers = {}
    if following is not None:
        # Relative to the request's own path (RFC 3986 §5.2): the same query, next page.
        query = urlencode({"format": shape.value, "limit": limit, "cursor": following})
        headers["Link"] = f'<?{query}>; rel="next"'
    return Response(lines, media_type=NDJSON_MEDIA_TYPE, headers=headers)


@router.post("", status_code=status.HTTP_202_ACCEPTED, summary="Register a device")
def register_device(who: DeviceManager, db: Db, store: Store, body: RegisterDevice) -> Accepted:
    """Records ``device.registered`` (and ``device.assigned`` when a clinic is given)."""
    if queries.is_registered(db, body.device_id):
        raise conflict(f"device {body.device_id} is registered already")
    accepted = commands.register_device(store, body.device_id, body.model, who.author)
    if body.clinic_id is not None:
        accepted = commands.assign_device(store, body.device_id, body.clinic_id, who.author)
    return accepted


@router.put("/{device_id}/clinic", status_code=status.HTTP_202_ACCEPTED, summary="Assign")
def assign_device(
    who: DeviceManager, db: Db, store: Store, device_id: DevicePath, body: AssignDevice
) -> Accepted:
    """Assigns the device to a clinic, or (``clinic_id: null``) takes it back."""
    if not queries.device_visible(db, who, device_id):
        raise not_found("device")
    return commands.assign_device(store, device_id, body.clinic_id, who.author)


@router.post(
    "/{device_id}/services", status_code=status.HTTP_202_ACCEPTED, summary="Record a service"
)
def record_service(
    who: DeviceManager, db: Db, store: Store, device_id: DevicePath, body: RecordService
) -> Accepted:
    """A service visit: the actuator's count since service starts again."""
    if not queries.device_visible(db, who, device_id):
        raise not_found("device")
    return commands.record_service(
        store, device_id, body.notes, body.actuations_at_service, who.author
    )


def event_out(event: StoredEvent) -> EventOut:
    body: dict[str, Any] = orjson.loads(event.body)
    return EventOut(
        seq=event.seq,
        event_id=str(event.event_id),
        type=event.type,
        occurred_at=event.occurred_at,
        received_at=event.received_at,
        hash=event.hash,
        prev_hash=event.prev_hash,
        data=body.get("data", {}),
        # The parsed stored bytes: re-serializing typed fields (times above all) would
        # change the text the hash covers.
        event={**body, "hash": event.hash},
    )


def stored_line(event: StoredEvent) -> bytes:
    """The stored bytes (the canonical JSON the hash covers) with ``hash`` appended as
    the last member, and a newline: cut ``,"hash":"…"`` back out and SHA-256 of what
    is left is the hash, byte for byte."""
    return b'%s,"hash":"%s"}\n' % (event.body[:-1], event.hash.encode())
