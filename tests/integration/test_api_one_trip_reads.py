"""The hot reads (a device, a page of devices, a page of sessions) take one trip
through the thread pool past FastAPI's dependency solving, and answer exactly as
FastAPI's own way does: the same status, headers and bytes for every token, scope
and parameter, refusals included; a revoked token is refused on the next read; a
page of devices or sessions written from its rows is the page of models, byte for
byte."""

from collections.abc import Iterator
from datetime import datetime
from typing import Any

import anyio.to_thread
import pytest
from fastapi.testclient import TestClient

from services.api.access import Principal, Role
from services.api.deps import token_joined_read, token_read
from services.api.models import DeviceOut, SessionOut
from services.api.pagination import Page, next_cursor, time_key
from services.api.queries import devices as device_queries
from services.api.queries import sessions as session_queries
from services.api.queries.sessions import SessionRow
from services.api.responses import page_body
from services.api.tokens import create_token, revoke_token
from services.projections.read_store import ReadModelStore
from tests.support.api_client import api_client, bearer
from tests.support.api_world import CLINIC_A, World, build_world

_FLEET = Principal("fleet", Role.MANUFACTURER, None, "fleet")
_CLINIC = Principal("clinic", Role.CLINIC, CLINIC_A, "clinic")
_PAGE = 7

_READS = ("/api/v1/devices/HP-000101", "/api/v1/devices?limit=2", "/api/v1/sessions?limit=3")
_PATHS = (
    *_READS,
    "/api/v1/devices/HP-000201",  # another clinic's device
    "/api/v1/devices/HP-999999",  # no such device
    "/api/v1/devices/not-a-device",  # does not validate
    "/api/v1/devices",
    "/api/v1/devices?limit=0",
    "/api/v1/devices?status=bogus",
    "/api/v1/devices?cursor=garbage",
    f"/api/v1/devices?clinic_id={CLINIC_A}&q=hp-0001",
    "/api/v1/devices?limit=1&cursor=WyJIUC0wMDAxMDEiXQ",
    "/api/v1/sessions",
    "/api/v1/sessions?device_id=HP-000101&limit=2",
    "/api/v1/sessions?flagged=true",
    "/api/v1/sessions?flagged=maybe",
    "/api/v1/sessions?from=2026-11-21T00:00:00Z&to=2026-11-20T00:00:00Z",
    "/api/v1/sessions?from=2026-11-20T00:00:00",
    "/api/v1/sessions?cursor=garbage",
    "/api/v1/sessions?limit=100000",
)


@pytest.fixture
def world(store_url: str) -> World:
    return build_world(store_url, hours=4.0)


@pytest.fixture
def client(world: World) -> Iterator[TestClient]:
    with api_client(world.database_url) as opened:
        yield opened


def _unused() -> None:
    """Overridden only to send every read FastAPI's way (an override disables the
    short way, so a test's overrides always apply)."""


def _counted_trips(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The functions run on the thread pool from now on, in order."""
    trips: list[Any] = []
    run_sync = anyio.to_thread.run_sync

    async def counted(function: Any, *args: Any, **kwargs: Any) -> Any:
        trips.append(getattr(function, "func", function))
        return await run_sync(function, *args, **kwargs)

    monkeypatch.setattr(anyio.to_thread, "run_sync", counted)
    return trips


def _answer(client: TestClient, path: str, headers: dict[str, str]) -> tuple[Any, ...]:
    response = client.get(path, headers=headers)
    shown = {k: v for k, v in response.headers.items() if k != "date"}
    return response.status_code, shown, response.content


def test_every_read_answers_as_fastapi_does(
    client: TestClient, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    trips = _counted_trips(monkeypatch)
    engine = client.app.state.context.engine  # type: ignore[attr-defined]
    revoked, revoked_token = create_token(engine, Role.CLINIC, CLINIC_A, "revoked")
    revoke_token(engine, revoked.token_id)
    credentials: list[dict[str, str]] = [
        *(bearer(token) for token in world.tokens.values()),
        bearer(revoked_token),
        bearer("clt_" + "x" * 40),
        {"Authorization": "bearer " + world.tokens["clinic_a"]},
        {"Authorization": "Basic " + world.tokens["clinic_a"]},
        {"Authorization": "Bearer"},
        {},
    ]
    app: Any = client.app
    statuses, shortened = set(), 0
    for path in _PATHS:
        for headers in credentials:
            trips.clear()
            short = _answer(client, path, headers)
            shortened += token_read in trips or token_joined_read in trips
            app.dependency_overrides[_unused] = _unused
            trips.clear()
            try:
                general = _answer(client, path, headers)
            finally:
                app.dependency_overrides.clear()
            assert token_read not in trips  # FastAPI's way indeed
            assert token_joined_read not in trips
            assert short == general, (path, headers)
            statuses.add(short[0])
    assert {200, 400, 401, 404, 422} <= statuses  # the refusals were exercised
    assert shortened >= len(_READS) * len(world.tokens)


def test_a_hot_read_makes_one_trip_through_the_thread_pool(
    client: TestClient, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The checkout, the token's lookup, the role check and the read share one trip;
    a device's detail looks its token up in its own statement."""
    trips = _counted_trips(monkeypatch)
    for path in _READS:
        trips.clear()
        response = client.get(path, headers=bearer(world.tokens["clinic_a"]))
        assert response.status_code == 200, response.text
        joined = path == "/api/v1/devices/HP-000101"
        assert trips == [token_joined_read if joined else token_read], path


def test_a_revoked_token_is_refused_on_the_next_read(client: TestClient) -> None:
    engine = client.app.state.context.engine  # type: ignore[attr-defined]
    record, token = create_token(engine, Role.CLINIC, CLINIC_A, "soon revoked")
    for path in _READS:
        assert client.get(path, headers=bearer(token)).status_code == 200
    revoke_token(engine, record.token_id)
    for path in _READS:
        refused = client.get(path, headers=bearer(token))
        assert refused.status_code == 401
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["detail"] == "the token was revoked"
    assert engine.pool.checkedout() == 0


def test_a_session_page_written_from_its_rows_is_the_models_json(world: World) -> None:
    """Every page, in the fleet's scope and a clinic's: the same bytes as the page of
    ``SessionOut`` models it replaces."""
    assert SessionRow.__annotations__ == {
        name: field.annotation for name, field in SessionOut.model_fields.items()
    }
    read_models = ReadModelStore(world.database_url)
    pages = 0
    try:
        with read_models.engine.connect() as connection:
            for who in (_FLEET, _CLINIC):
                query = session_queries.session_query(who)
                after: tuple[datetime, str] | None = None
                while True:
                    models = session_queries.list_sessions(connection, query, after, _PAGE)
                    rows = session_queries.session_rows(connection, query, after, _PAGE)
                    following = next_cursor(
                        models, _PAGE, lambda row: time_key(row.started_at, row.session_id)
                    )
                    expected: Page[SessionOut] = Page(items=models[:_PAGE], next_cursor=following)
                    written = session_queries.page_json(rows[:_PAGE], following)
                    assert written == expected.model_dump_json(by_alias=True).encode()
                    pages += 1
                    if following is None:
                        break
                    after = (models[_PAGE - 1].started_at, models[_PAGE - 1].session_id)
    finally:
        read_models.close()
    assert pages > 4  # more than one page in each scope


def test_a_device_page_written_from_its_rows_is_the_models_json(world: World) -> None:
    """Every page, in the fleet's scope and a clinic's, unfiltered and by status: each
    device holds what ``DeviceOut`` would, and the page is the same bytes as the page
    of models it replaces."""
    read_models = ReadModelStore(world.database_url)
    pages = 0
    try:
        with read_models.engine.connect() as connection:
            for who, status in ((_FLEET, None), (_CLINIC, None), (_FLEET, "ok")):
                after: str | None = None
                while True:
                    items = device_queries.list_devices(
                        connection, who, clinic_id=None, status=status, firmware=None,
                        after=after, limit=1,
                    )  # fmt: skip
                    models = [DeviceOut(**item) for item in items]
                    assert [model.model_dump() for model in models] == items
                    following = next_cursor(items, 1, lambda item: [item["device_id"]])
                    expected: Page[DeviceOut] = Page(items=models[:1], next_cursor=following)
                    written = bytes(page_body(items[:1], following).body)
                    assert written == expected.model_dump_json(by_alias=True).encode()
                    pages += 1
                    if following is None:
                        break
                    after = items[0]["device_id"]
    finally:
        read_models.close()
    assert pages > 4  # more than one page in the fleet's scope
