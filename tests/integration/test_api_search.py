"""Search (`q`) and the list filters of devices, sessions and alerts, on SQLite and
PostgreSQL: each answer equals the same filter applied to the unfiltered list, pages
by cursor, stays in the caller's scope, and a bad term is a precise 4xx."""

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from services.api import Role
from services.api.tokens import create_token
from services.eventstore import upgrade_schema
from services.projections.read_store import ReadModelStore
from tests.support.api_client import api_client, bearer, walk_pages
from tests.support.api_world import CLINIC_A
from tests.support.list_fleet import ListFleet, load_list_fleet

Item = dict[str, Any]


@pytest.fixture
def fleet(store_url: str) -> Iterator[tuple[TestClient, ListFleet, dict[str, str]]]:
    upgrade_schema(store_url)
    read_models = ReadModelStore(store_url)
    try:
        loaded = load_list_fleet(read_models.engine, devices=240, sessions=900, alerts=160)
        tokens = {
            "manufacturer": create_token(read_models.engine, Role.MANUFACTURER, None, "m")[1],
            "clinic": create_token(read_models.engine, Role.CLINIC, CLINIC_A, "c")[1],
        }
    finally:
        read_models.close()
    with api_client(store_url) as client:
        yield client, loaded, tokens


def _ids(items: list[Item], key: str) -> list[str]:
    return [item[key] for item in items]


def _kept(items: list[Item], keep: Callable[[Item], bool]) -> list[Item]:
    return [item for item in items if keep(item)]


def test_device_search_is_a_case_blind_id_prefix(
    fleet: tuple[TestClient, ListFleet, dict[str, str]],
) -> None:
    client, _, tokens = fleet
    every = walk_pages(client, tokens["manufacturer"], "/api/v1/devices", limit=500)
    found = walk_pages(client, tokens["manufacturer"], "/api/v1/devices?q=hp-00012", limit=4)

    expected = _kept(every, lambda item: item["device_id"].startswith("HP-00012"))
    assert _ids(found, "device_id") == _ids(expected, "device_id")
    assert len(found) == 10  # HP-000120 … HP-000129, across three pages of four


def test_device_search_keeps_to_the_clinic_and_combines_with_status(
    fleet: tuple[TestClient, ListFleet, dict[str, str]],
) -> None:
    client, loaded, tokens = fleet
    every = walk_pages(client, tokens["manufacturer"], "/api/v1/devices", limit=500)
    found = walk_pages(client, tokens["clinic"], "/api/v1/devices?q=HP-0001&status=ok")

    expected = _kept(
        every,
        lambda item: (
            item["device_id"].startswith("HP-0001")
            and item["clinic_id"] == CLINIC_A
            and item["status"] == "ok"
        ),
    )
    assert _ids(found, "device_id") == _ids(expected, "device_id")
    assert found
    assert {loaded.clinic_of[item["device_id"]] for item in found} == {CLINIC_A}


def test_session_search_matches_session_or_device_id(
    fleet: tuple[TestClient, ListFleet, dict[str, str]],
) -> None:
    client, _, tokens = fleet
    token = tokens["manufacturer"]
    every = walk_pages(client, token, "/api/v1/sessions", limit=500)
    target = every[17]["session_id"]

    by_session = walk_pages(client, token, f"/api/v1/sessions?q={target[:8].upper()}")
    by_device = walk_pages(client, token, "/api/v1/sessions?q=hp-00002", limit=7)

    assert target in _ids(by_session, "session_id")
    assert all(item["session_id"].startswith(target[:8]) for item in by_session)
    expected = _kept(every, lambda item: item["device_id"].startswith("HP-00002"))
    assert _ids(by_device, "session_id") == _ids(expected, "session_id")
    assert len(expected) > 7  # more than one page


def test_flagged_sessions_are_the_unreconciled_and_the_broken(
    fleet: tuple[TestClient, ListFleet, dict[str, str]],
) -> None:
    client, _, tokens = fleet
    token = tokens["clinic"]
    every = walk_pages(client, token, "/api/v1/sessions", limit=500)
    flagged = walk_pages(client, token, "/api/v1/sessions?flagged=true")

    expected = _kept(
        every, lambda item: item["reconciled"] is False or item["chain_status"] == "broken"
    )
    assert _ids(flagged, "session_id") == _ids(expected, "session_id")
    assert {item["reconciled"] is False for item in flagged} == {True, False}


def test_alert_filters_rule_severity_and_search(
    fleet: tuple[TestClient, ListFleet, dict[str, str]],
) -> None:
    client, _, tokens = fleet
    token = tokens["manufacturer"]
    every = walk_pages(client, token, "/api/v1/alerts", limit=500)

    by_rule = walk_pages(client, token, "/api/v1/alerts?rule=device_fault&severity=critical", 3)
    expected = _kept(
        every, lambda item: item["rule"] == "device_fault" and item["severity"] == "critical"
    )
    assert _ids(by_rule, "alert_id") == _ids(expected, "alert_id")
    assert expected

    subject = every[5]["subject"]
    assert _ids(walk_pages(client, token, f"/api/v1/alerts?q={subject}"), "alert_id") == [
        every[5]["alert_id"]
    ]
    prefix = every[9]["alert_id"][:6]
    by_id = walk_pages(client, token, f"/api/v1/alerts?q={prefix}")
    assert every[9]["alert_id"] in _ids(by_id, "alert_id")
    assert all(
        item["alert_id"].startswith(prefix) or item["device_id"].startswith(prefix.upper())
        for item in by_id
    )


@pytest.mark.parametrize(
    ("path", "problem"),
    [
        ("/api/v1/devices?q=%25", "q"),
        ("/api/v1/devices?q=" + "A" * 65, "q"),
        ("/api/v1/sessions?q=a%20b", "q"),
        ("/api/v1/alerts?rule=no_such_rule", "rule"),
        ("/api/v1/sessions?flagged=perhaps", "flagged"),
    ],
)
def test_bad_search_terms_are_refused_precisely(
    fleet: tuple[TestClient, ListFleet, dict[str, str]], path: str, problem: str
) -> None:
    client, _, tokens = fleet
    response = client.get(path, headers=bearer(tokens["manufacturer"]))

    assert response.status_code == 422, response.text
    assert problem in response.text
