"""Dashboard log-in: the session cookie's flags, the way back to the page asked for,
and no redirect off the server."""

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from tests.support.api_client import api_client
from tests.support.api_world import World, build_world


@pytest.fixture
def world(sqlite_url: str) -> World:
    return build_world(sqlite_url, hours=2)


@pytest.fixture
def client(world: World) -> Iterator[TestClient]:
    with api_client(world.database_url) as opened:
        yield opened


def test_pages_send_strangers_to_log_in_and_back(client: TestClient, world: World) -> None:
    """A page asked for without a session leads to the log-in form, which returns there
    after a good token, with an HttpOnly, SameSite=Lax cookie."""
    asked = client.get("/devices/HP-000101", follow_redirects=False)
    assert asked.status_code == 303
    assert asked.headers["location"] == "/login?next=/devices/HP-000101"
    form = client.get(asked.headers["location"])
    assert 'name="next" value="/devices/HP-000101"' in form.text
    logged_in = client.post(
        "/login",
        data={"token": world.tokens["clinic_a"], "next": "/devices/HP-000101"},
        follow_redirects=False,
    )
    assert logged_in.status_code == 303
    assert logged_in.headers["location"] == "/devices/HP-000101"
    cookie = logged_in.headers["set-cookie"].lower()
    assert "httponly" in cookie
    assert "samesite=lax" in cookie
    assert client.get("/devices/HP-000101").status_code == 200


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/x", "devices"])
def test_log_in_never_redirects_off_the_server(
    client: TestClient, world: World, target: str
) -> None:
    """``next`` pointing anywhere but a path here sends the user to the fleet page."""
    response = client.post(
        "/login", data={"token": world.tokens["manufacturer"], "next": target},
        follow_redirects=False,
    )  # fmt: skip
    assert response.headers["location"] == "/"


def test_a_clinic_cannot_open_another_clinics_pages(client: TestClient, world: World) -> None:
    """Another clinic's device, session and alert pages are 404 pages naming nothing."""
    client.post("/login", data={"token": world.tokens["clinic_a"]})
    page = client.get("/devices/HP-000201")
    assert page.status_code == 404
    assert "HP-000201" not in page.text
    assert "clinic-bravo" not in page.text
    auditor = client.post("/login", data={"token": world.tokens["auditor"]}, follow_redirects=False)
    assert auditor.headers["location"] == "/"
    assert client.get("/alerts").status_code == 403
