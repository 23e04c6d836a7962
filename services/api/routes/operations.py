"""Operations: the fleet overview, dead letters, health and readiness."""

import socket
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import text

from services.api.deps import Context, Db, DeviceReader, Operator, Store
from services.api.models import DeadLetterOut, FleetOverview
from services.api.pagination import CursorParam, Limit, Page, decode_cursor, next_cursor
from services.api.problems import ERROR_RESPONSES
from services.api.queries.fleet import fleet_overview

router = APIRouter(responses=ERROR_RESPONSES)
health = APIRouter(tags=["health"])
_PREVIEW_BYTES = 1024


@router.get("/fleet", tags=["fleet"], summary="Fleet overview")
def get_fleet(who: DeviceReader, db: Db) -> FleetOverview:
    """Devices by status, firmware and clinic; open alerts; cartridges installed per week."""
    return fleet_overview(db, who)


@router.get("/dead-letters", tags=["operations"], summary="Refused input")
def list_dead_letters(
    who: Operator, store: Store, cursor: CursorParam = None, limit: Limit = 100
) -> Page[DeadLetterOut]:
    """What the gateway refused (and why), oldest first: manufacturer tokens only."""
    del who
    after = decode_cursor(cursor, (int,))
    letters = store.dead_letters(after_id=0 if after is None else after[0], limit=limit + 1)
    items = [
        DeadLetterOut(
            id=letter.id, received_at=letter.received_at, topic=letter.topic,
            reason=letter.reason, detail=letter.detail, device_id=letter.device_id,
            seq=letter.seq, raw_size=letter.raw_size,
            raw_preview=letter.raw[:_PREVIEW_BYTES].decode("utf-8", "replace"),
        )
        for letter in letters
    ]  # fmt: skip
    return Page(items=items[:limit], next_cursor=next_cursor(items, limit, lambda d: [d.id]))


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    status: Literal["ready", "unready"]
    database: str
    broker: str


@health.get("/healthz", summary="Liveness")
def healthz() -> Health:
    """The process answers."""
    return Health(status="ok")


@health.get(
    "/readyz",
    summary="Readiness",
    responses={503: {"model": Readiness, "description": "A dependency is unreachable"}},
)
def readyz(api: Context, timeout_s: Annotated[float, Query(gt=0, le=10)] = 2.0) -> JSONResponse:
    """The database answers a query and the MQTT broker accepts a connection."""
    database, broker = "ok", "ok"
    try:
        with api.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as error:  # noqa: BLE001 - any failure means not ready; say which
        database = f"unreachable: {type(error).__name__}"
    try:
        with socket.create_connection((api.broker.host, api.broker.port), timeout=timeout_s):
            pass
    except OSError as error:
        broker = f"unreachable: {error.strerror or type(error).__name__}"
    ready = database == "ok" and broker == "ok"
    body = Readiness(status="ready" if ready else "unready", database=database, broker=broker)
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503)
