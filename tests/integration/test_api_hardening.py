"""Hardening of the API and dashboard: security headers on every kind of response, no
page that references another host, API docs that render offline under the policy,
and /metrics only on its own listener."""

import http.client
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from services.api.hardening import CONTENT_SECURITY_POLICY
from tests.support.api_client import api_client, bearer
from tests.support.api_world import World, build_world
from tests.support.platform_processes import serving_api
from tests.support.postgres import free_port

_REFERENCE = re.compile(r"""(?:src|href|action)\s*=\s*["']([^"']*)["']""", re.IGNORECASE)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    """A small fleet in a SQLite file, shared by the module."""
    return build_world(f"sqlite:///{tmp_path_factory.mktemp('hardening') / 'c.db'}", hours=1)


@pytest.fixture
def client(world: World) -> Iterator[TestClient]:
    with api_client(world.database_url) as opened:
        yield opened


def _assert_hardened(headers: dict[str, str]) -> None:
    assert headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["x-frame-options"] == "DENY"
    assert headers["referrer-policy"] == "no-referrer"
    assert headers["cache-control"] == "no-store"
    assert "strict-transport-security" not in headers  # plain HTTP: no HSTS


def test_every_kind_of_response_carries_the_security_headers(
    client: TestClient, world: World
) -> None:
    """A dashboard page, an API JSON answer, an API refusal, the login page and the docs
    page carry CSP, nosniff, DENY framing, no referrer and no-store."""
    responses = {
        "dashboard": client.get("/", follow_redirects=False),
        "api": client.get("/api/v1/devices", headers=bearer(world.tokens["manufacturer"])),
        "refusal": client.get("/api/v1/devices"),
        "login": client.get("/login"),
        "docs": client.get("/api/v1/docs"),
    }
    assert responses["api"].status_code == 200
    assert responses["refusal"].status_code == 401
    assert responses["login"].status_code == 200
    assert responses["docs"].status_code == 200
    for name, response in responses.items():
        assert response.status_code < 500, name
        _assert_hardened(dict(response.headers))
    asset = client.get("/static/coreline.css")
    assert asset.headers["x-content-type-options"] == "nosniff"
    assert asset.headers.get("cache-control") != "no-store"  # the same for everyone


def test_hsts_only_when_cookies_are_secure(world: World) -> None:
    """Behind HTTPS (secure cookies) every answer says Strict-Transport-Security."""
    from services.api import create_app  # noqa: PLC0415
    from services.eventstore import open_event_store  # noqa: PLC0415
    from transport import BrokerAddress  # noqa: PLC0415

    app = create_app(
        world.database_url,
        lambda: open_event_store(world.database_url),
        BrokerAddress(host="127.0.0.1", port=free_port()),
        secure_cookies=True,
    )
    with TestClient(app) as secure:
        assert "max-age=" in secure.get("/healthz").headers["strict-transport-security"]


def test_no_page_references_another_host(client: TestClient) -> None:
    """The login page, the docs page and the pages they load name only paths on this
    server: no scheme, no host, no protocol-relative address."""
    for path in ("/login", "/api/v1/docs"):
        page = client.get(path)
        assert page.status_code == 200
        references = _REFERENCE.findall(page.text)
        assert references, path
        for reference in references:
            if reference.startswith("#"):
                continue  # a place on the same page (the skip link)
            assert reference.startswith("/"), reference
            assert not reference.startswith("//"), reference
            if not reference.startswith("/login"):
                assert client.get(reference).status_code == 200, reference
    for template in Path("services/api/dashboard/templates").glob("*.html"):
        text = template.read_text()
        assert "style=" not in text, template.name
        assert "<script>" not in text, template.name
        assert not [ref for ref in _REFERENCE.findall(text) if "//" in ref], template.name


def test_metrics_are_not_served_on_the_api_port(client: TestClient) -> None:
    """/metrics on the public port is 404: request counts are for the operator's
    Prometheus, which reads them from the metrics listener."""
    assert client.get("/metrics").status_code == 404


@pytest.fixture(scope="module")
def served(world: World, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, int]]:
    """``coreline api --metrics-port`` on loopback: (API port, metrics port)."""
    port, metrics_port = free_port(), free_port()
    log_path = tmp_path_factory.mktemp("api") / "api.log"
    with serving_api(
        port, log_path, "--metrics-port", str(metrics_port), database_url=world.database_url
    ):
        yield port, metrics_port


def _get(port: int, path: str) -> tuple[int, str]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


def test_metrics_listen_on_their_own_port(served: tuple[int, int]) -> None:
    """With --metrics-port the request metrics are served there, and only there."""
    port, metrics_port = served
    assert _get(port, "/healthz")[0] == 200
    assert _get(port, "/metrics")[0] == 404
    status, text = _get(metrics_port, "/metrics")
    assert status == 200
    assert 'coreline_api_requests_total{method="GET",route="/healthz",status="200"}' in text
