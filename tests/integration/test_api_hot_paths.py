"""The device and session reads every dashboard makes, kept cheap without changing
what they answer: a device list reads only the members of each summary it shows,
and still agrees with the device pages (a clinic's scope included); the bodies are
the route's declared models, field for field and in order; a read costs one trip
through the thread pool; a refused token gives its connection back."""

from collections.abc import Iterator
from typing import Any

import anyio.to_thread
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event

from services.api.models import DeviceDetail, DeviceOut, SessionOut
from tests.support.api_client import api_client, bearer
from tests.support.api_world import CLINIC_A, World, build_world, project

_LISTED = list(DeviceOut.model_fields)


@pytest.fixture
def world(store_url: str) -> World:
    return build_world(store_url, hours=4.0)


@pytest.fixture
def client(world: World) -> Iterator[TestClient]:
    with api_client(world.database_url) as opened:
        yield opened


def _get(client: TestClient, world: World, path: str, token: str) -> Any:
    response = client.get(path, headers=bearer(world.tokens[token]))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    return response.json()


def test_device_lists_agree_with_device_pages_in_every_scope(
    client: TestClient, world: World
) -> None:
    """Each listed device, for every role and clinic, is its device page's fields in
    the model's order: the page decodes the whole summary, the list a part of it.
    HP-000201 moves from clinic B to A first, so A's views leave out B's faults."""
    moved = client.put(
        "/api/v1/devices/HP-000201/clinic",
        headers=bearer(world.tokens["manufacturer"]),
        json={"clinic_id": CLINIC_A},
    )
    assert moved.status_code == 202
    project(world.database_url)
    shown_faults = shown_cartridges = 0
    everything = _get(client, world, "/api/v1/devices", "manufacturer")["items"]
    whole = {item["device_id"]: item for item in everything}
    views = {}
    for token in ("manufacturer", "clinic_a", "clinic_b", "auditor", "auditor_a"):
        listed = views[token] = _get(client, world, "/api/v1/devices?limit=500", token)
        assert listed["next_cursor"] is None
        assert list(listed) == ["items", "next_cursor"]
        for item in listed["items"]:
            assert list(item) == _LISTED
            detail = _get(client, world, f"/api/v1/devices/{item['device_id']}", token)
            assert list(detail) == list(DeviceDetail.model_fields)
            assert item == {name: detail[name] for name in _LISTED}
            assert item["open_faults"] == len(detail["faults"])
            shown_faults += item["open_faults"]
            shown_cartridges += item["cartridge_life_used_pct"] is not None
    assert shown_faults > 0
    assert shown_cartridges > 0
    moved_item = next(i for i in views["clinic_a"]["items"] if i["device_id"] == "HP-000201")
    assert moved_item["open_faults"] < whole["HP-000201"]["open_faults"], "B's faults stay B's"


def test_pages_are_the_declared_models(client: TestClient, world: World) -> None:
    """Paging still walks every device once with the cursor, and a session page's
    items are ``SessionOut`` field for field."""
    seen: list[str] = []
    path = "/api/v1/devices?limit=1"
    while True:
        page = _get(client, world, path, "manufacturer")
        seen += [item["device_id"] for item in page["items"]]
        if page["next_cursor"] is None:
            break
        path = f"/api/v1/devices?limit=1&cursor={page['next_cursor']}"
    assert seen == sorted(set(seen))
    assert len(seen) == 4
    sessions = _get(client, world, "/api/v1/sessions?limit=3", "clinic_a")
    assert sessions["items"]
    for item in sessions["items"]:
        assert list(item) == list(SessionOut.model_fields)
        assert SessionOut.model_validate(item).model_dump(mode="json") == item
    schema = client.get("/api/v1/openapi.json").json()
    ok = "200"
    listed = schema["paths"]["/api/v1/devices"]["get"]["responses"][ok]
    detail = schema["paths"]["/api/v1/devices/{device_id}"]["get"]["responses"][ok]
    sessions_listed = schema["paths"]["/api/v1/sessions"]["get"]["responses"][ok]
    assert listed["content"]["application/json"]["schema"]["$ref"].endswith("Page_DeviceOut_")
    assert detail["content"]["application/json"]["schema"]["$ref"].endswith("/DeviceDetail")
    assert sessions_listed["content"]["application/json"]["schema"]["$ref"].endswith(
        "Page_SessionOut_"
    )


def test_a_read_makes_one_trip_through_the_thread_pool(
    client: TestClient, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The connection's checkout, the token lookup and the handler share one trip;
    the body is not validated again on another."""
    trips: list[str] = []
    run_sync = anyio.to_thread.run_sync

    async def counted(function: Any, *args: Any, **kwargs: Any) -> Any:
        trips.append(getattr(function, "__name__", repr(function)))
        return await run_sync(function, *args, **kwargs)

    monkeypatch.setattr(anyio.to_thread, "run_sync", counted)
    for path in ("/api/v1/devices/HP-000101", "/api/v1/devices?limit=2", "/api/v1/sessions"):
        trips.clear()
        _get(client, world, path, "clinic_a")
        assert len(trips) == 1, (path, trips)


def test_a_refused_token_gives_its_connection_back(client: TestClient, world: World) -> None:
    engine = client.app.state.context.engine  # type: ignore[attr-defined]
    for _ in range(3):
        refused = client.get("/api/v1/devices", headers=bearer("clt_" + "x" * 40))
        assert refused.status_code == 401
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.headers["x-frame-options"] == "DENY"
    assert engine.pool.checkedout() == 0
    _get(client, world, "/api/v1/devices/HP-000101", "manufacturer")
    assert engine.pool.checkedout() == 0


def test_a_device_detail_is_one_statement_on_postgresql(
    client: TestClient, world: World, adapter: str
) -> None:
    """The token's lookup rides in the device's statement on PostgreSQL (SQLite, with no
    ``LATERAL`` and no round trip, sends the two); a clinic's detail adds only its
    custody reads."""
    engine = client.app.state.context.engine  # type: ignore[attr-defined]
    sent: list[str] = []

    def count(*args: Any) -> None:
        sent.append(str(args[2]))

    event.listen(engine, "before_cursor_execute", count)
    try:
        _get(client, world, "/api/v1/devices/HP-000101", "manufacturer")
        fleet = len(sent)
        sent.clear()
        _get(client, world, "/api/v1/devices/HP-000101", "clinic_a")
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert fleet == (1 if adapter == "postgres" else 2)
    assert "api_tokens" in sent[0]
    assert "read_devices" in sent[0 if adapter == "postgres" else 1]
