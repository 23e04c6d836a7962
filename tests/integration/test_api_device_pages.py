"""Device lists as each of their query forms answers them, on SQLite and PostgreSQL:
pages after a cursor, of one clinic and of a search by id or enrolled serial hold
exactly the devices the fleet has there, in id order, and carry the registry's and
presence's columns of each."""

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from services.api import Role
from services.api.queries import devices as device_queries
from services.api.queries.tables import READ, presence
from services.api.tokens import create_token
from services.eventstore import upgrade_schema
from services.projections.read_store import ReadModelStore
from tests.support.api_client import api_client, walk_pages
from tests.support.api_world import CLINIC_A
from tests.support.list_fleet import NEVER_CONNECTED, ListFleet, load_list_fleet

Item = dict[str, Any]
# Serials that begin like other devices' ids: a search finds them by serial, between
# the devices it finds by id.
# One begins like its own id: found by both, listed once.
_SERIALS = {
    "HP-000005": "hp-00012a",
    "HP-000200": "HP-00012X",
    "HP-000150": "HP-00013",
    "HP-000123": "HP-000123/7",
    # ``_`` is a wildcard of ``LIKE``; a search matches it as itself.
    "HP-000210": "SN_7",
    "HP-000211": "SNX7",
}
_OFFLINE = "HP-000124"


@pytest.fixture
def fleet(store_url: str) -> Iterator[tuple[TestClient, ListFleet, str]]:
    upgrade_schema(store_url)
    read_models = ReadModelStore(store_url)
    try:
        loaded = load_list_fleet(read_models.engine, devices=240, sessions=60, alerts=10)
        with read_models.engine.begin() as connection:
            for device_id, serial in _SERIALS.items():
                connection.execute(
                    update(READ.registry)
                    .where(READ.registry.c.device_id == device_id)
                    .values(serial=serial)
                )
            connection.execute(
                update(presence).where(presence.c.device_id == _OFFLINE).values(online=False)
            )
        token = create_token(read_models.engine, Role.MANUFACTURER, None, "m")[1]
    finally:
        read_models.close()
    with api_client(store_url) as client:
        yield client, loaded, token


def test_a_search_pages_devices_found_by_id_and_by_serial_in_id_order(
    fleet: tuple[TestClient, ListFleet, str],
) -> None:
    client, _, token = fleet
    found = walk_pages(client, token, "/api/v1/devices?q=hp-00012", limit=4)

    by_id = [f"HP-00012{n}" for n in range(10)]
    assert [item["device_id"] for item in found] == ["HP-000005", *by_id, "HP-000200"]
    serials = {item["device_id"]: item["serial"] for item in found}
    assert serials["HP-000005"] == "hp-00012a"
    assert serials["HP-000200"] == "HP-00012X"
    offline = next(item for item in found if item["device_id"] == _OFFLINE)
    assert offline["online"] is False
    assert offline["status"] in {"offline", "integrity"}


def test_a_search_by_serial_alone_finds_the_device_once(
    fleet: tuple[TestClient, ListFleet, str],
) -> None:
    client, _, token = fleet
    # HP-000130 … HP-000139 by id, and HP-000150 by its serial "HP-00013".
    found = walk_pages(client, token, "/api/v1/devices?q=HP-00013", limit=100)
    expected = [f"HP-00013{n}" for n in range(10)] + ["HP-000150"]
    assert [item["device_id"] for item in found] == expected


def _online(store_url: str) -> dict[str, bool | None]:
    """Each device's presence as stored (``None``: never connected)."""
    read_models = ReadModelStore(store_url)
    try:
        with read_models.engine.connect() as connection:
            devices = connection.execute(select(READ.devices.c.device_id)).scalars().all()
            online = dict(connection.execute(select(presence.c.device_id, presence.c.online)).all())
    finally:
        read_models.close()
    return {device_id: online.get(device_id) for device_id in devices}


def test_an_underscore_in_a_search_term_matches_itself(
    fleet: tuple[TestClient, ListFleet, str],
) -> None:
    client, _, token = fleet
    assert [
        item["device_id"] for item in walk_pages(client, token, "/api/v1/devices?q=SN_", 10)
    ] == ["HP-000210"]
    assert [
        item["device_id"] for item in walk_pages(client, token, "/api/v1/devices?q=sn", 10)
    ] == [
        "HP-000210",
        "HP-000211",
    ]


def test_pages_after_a_cursor_and_of_a_clinic_hold_the_fleet_s_devices_in_id_order(
    fleet: tuple[TestClient, ListFleet, str], store_url: str
) -> None:
    client, loaded, token = fleet
    every = walk_pages(client, token, "/api/v1/devices", limit=7)
    # The fleet's devices, and two that never connected: no presence row.
    assert [item["device_id"] for item in every] == sorted([*loaded.device_ids, *NEVER_CONNECTED])
    assert {item["device_id"]: item["online"] for item in every} == _online(store_url)
    assert next(item for item in every if item["device_id"] == _OFFLINE)["online"] is False
    assert {item["device_id"]: item["serial"] for item in every if item["serial"]} == _SERIALS

    of_clinic = walk_pages(client, token, f"/api/v1/devices?clinic_id={CLINIC_A}", limit=5)
    ids = [item["device_id"] for item in of_clinic]
    assert ids == sorted(ids)
    assert {d for d in loaded.device_ids if loaded.clinic_of[d] == CLINIC_A} <= set(ids)
    assert of_clinic == [item for item in every if item["clinic_id"] == CLINIC_A]


def test_a_search_matching_more_serials_than_it_names_finds_them_all(
    fleet: tuple[TestClient, ListFleet, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past ``SERIALS_NAMED`` matches the serials are asked for inside the statement
    (a fleet's worth named one by one would pass the driver's bound on parameters),
    with the same answer."""
    client, _, token = fleet
    monkeypatch.setattr(device_queries, "SERIALS_NAMED", 1)
    found = walk_pages(client, token, "/api/v1/devices?q=sn", 10)
    assert [item["device_id"] for item in found] == ["HP-000210", "HP-000211"]
    found = walk_pages(client, token, "/api/v1/devices?q=hp-00012", limit=4)
    assert [item["device_id"] for item in found] == [
        "HP-000005",
        *(f"HP-00012{n}" for n in range(10)),
        "HP-000200",
    ]
