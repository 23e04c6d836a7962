"""Bounded requests: oversized, chunked, slow and credential-less bodies are refused
before any handler reads them, and values the event schema cannot record are 422s.

The hostile-client test runs ``coreline api`` as a real server on loopback and
measures ``/healthz`` and the server's memory while the attack goes on."""

import http.client
import select
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from fastapi.testclient import TestClient

from services.api import Role, create_token
from services.eventstore import open_event_store
from services.projections.read_store import ReadModelStore
from tests.support.api_client import api_client, bearer
from tests.support.api_world import World, build_world
from tests.support.platform_processes import serving_api
from tests.support.postgres import free_port

LIMIT = 64 * 1024
HEALTH_BOUND_S = 0.5
RSS_GROWTH_BOUND = 60 * 1024 * 1024
BODY_TIMEOUT_S = 2


@pytest.fixture
def world(store_url: str) -> World:
    """A small fleet, on each adapter."""
    return build_world(store_url, hours=1)


@pytest.fixture
def client(world: World) -> Iterator[TestClient]:
    with api_client(world.database_url) as opened:
        yield opened


def test_a_declared_oversized_body_is_refused_before_the_token_is_checked(
    client: TestClient,
) -> None:
    """A Content-Length over the limit gets 413 problem+json, with or without a token."""
    for headers in ({}, bearer("clt_not-a-real-token")):
        response = client.post(
            "/api/v1/devices",
            content=b"{" + b" " * LIMIT + b"}",
            headers={**headers, "Content-Type": "application/json"},
        )
        assert response.status_code == 413
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["type"].endswith("/content-too-large")
        assert response.headers["connection"] == "close"


def test_a_chunked_body_is_cut_off_at_the_limit(client: TestClient, world: World) -> None:
    """A body with no Content-Length is counted as it arrives and refused past the limit,
    even with a valid token."""

    def chunks() -> Iterator[bytes]:
        for _ in range(1000):
            yield b" " * 1024

    response = client.post(
        "/api/v1/devices",
        content=chunks(),
        headers={**bearer(world.tokens["manufacturer"]), "Content-Type": "application/json"},
    )
    assert response.status_code == 413
    assert response.json()["detail"] == "/api/v1/devices accepts at most 65536 bytes"


def test_a_body_without_a_credential_is_refused_unread(client: TestClient) -> None:
    """A body sent to a route that needs a token, with no token at all, gets the same 401
    the route gives, without the body being parsed (malformed JSON is not a 422)."""
    response = client.post(
        "/api/v1/devices", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 401
    assert response.json()["detail"].startswith("send a bearer token")
    assert response.headers["www-authenticate"].startswith("Bearer")


def test_a_nonsense_content_length_is_a_bad_request(client: TestClient) -> None:
    """A Content-Length that is no byte count gets 400, not a guess."""
    response = client.post("/api/v1/devices", content=b"{}", headers={"Content-Length": "-5"})
    assert response.status_code == 400


def test_a_long_device_model_is_a_422(client: TestClient, world: World) -> None:
    """Registering a device whose model is longer than device.registered can record
    (64 characters) is a 422 naming the field, never a 500."""
    response = client.post(
        "/api/v1/devices",
        json={"device_id": "HP-000901", "model": "M" * 65},
        headers=bearer(world.tokens["manufacturer"]),
    )
    assert response.status_code == 422, response.text
    assert "model" in response.json()["detail"]
    fits = client.post(
        "/api/v1/devices",
        json={"device_id": "HP-000902", "model": "M" * 64},
        headers=bearer(world.tokens["manufacturer"]),
    )
    assert fits.status_code == 202, fits.text


def test_a_token_with_the_longest_label_records_its_changes(
    client: TestClient, world: World
) -> None:
    """A change made with a token whose label is as long as a label may be is
    recorded with that label in its author: the author fields of platform events
    hold every author a principal can have, so no label turns a change into a 500."""
    engine = ReadModelStore(world.database_url)
    try:
        _, token = create_token(engine.engine, Role.MANUFACTURER, None, "L" * 120)
    finally:
        engine.close()
    response = client.post(
        "/api/v1/devices", json={"device_id": "HP-000903", "model": "CX-2"}, headers=bearer(token)
    )
    assert response.status_code == 202, response.text
    store = open_event_store(world.database_url)
    try:
        (registered,) = store.read_stream("registry:HP-000903")
    finally:
        store.close()
    assert "L" * 120 in orjson.loads(registered.body)["data"]["registered_by"]


# -- a real server under hostile clients ------------------------------------------


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int, World, int]]:
    """``coreline api`` on loopback over a small SQLite fleet: (host, port, world, pid)."""
    folder = tmp_path_factory.mktemp("limits")
    world = build_world(f"sqlite:///{folder / 'coreline.db'}", hours=1)
    port = free_port()
    with serving_api(
        port, folder / "api.log", database_url=world.database_url,
        api_body_timeout_s=str(BODY_TIMEOUT_S),
    ) as server:  # fmt: skip
        yield "127.0.0.1", port, world, server.pid


def _healthz_seconds(port: int) -> float:
    started = time.monotonic()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", "/healthz")
        assert connection.getresponse().status == 200
    finally:
        connection.close()
    return time.monotonic() - started


def _rss(pid: int) -> int:
    """The process's resident memory in bytes, as the kernel counts it."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for process {pid}")


def _huge_declared(port: int, stop: threading.Event) -> None:
    """Declares 36 MB and pushes bytes as fast as the server takes them."""
    while not stop.is_set():
        with socket.create_connection(("127.0.0.1", port), timeout=2) as raw:
            raw.sendall(
                b"POST /api/v1/devices HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: 37748736\r\n\r\n"
            )
            try:
                for _ in range(512):
                    raw.sendall(b" " * 65536)
            except OSError:
                pass  # refused and closed: what should happen; go again


def _chunked_forever(port: int, token: str, stop: threading.Event) -> None:
    """A valid token and a chunked body that never ends."""
    while not stop.is_set():
        with socket.create_connection(("127.0.0.1", port), timeout=2) as raw:
            raw.sendall(
                b"POST /api/v1/devices HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Authorization: Bearer " + token.encode() + b"\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n"
            )
            try:
                while not stop.is_set():
                    raw.sendall(b"10000\r\n" + b" " * 65536 + b"\r\n")
            except OSError:
                pass


def _slow_body(port: int, token: str, stop: threading.Event, answers: list[int]) -> None:
    """A valid token and a small body sent a byte at a time, slower than the deadline."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        raw.sendall(
            b"POST /api/v1/devices HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer " + token.encode() + b"\r\nContent-Length: 1000\r\n\r\n"
        )
        for _ in range(1000):
            if stop.is_set():
                return
            raw.sendall(b" ")
            readable, _, _ = select.select([raw], [], [], 0.2)
            if readable:
                status_line = raw.recv(64).split(b" ")
                answers.append(int(status_line[1]) if len(status_line) > 1 else 0)
                return


def test_health_answers_and_memory_stays_bounded_under_hostile_bodies(
    served: tuple[str, int, World, int],
) -> None:
    """While clients send 36 MB bodies, endless chunked bodies with a valid token and a
    body slower than the deadline, /healthz answers within 0.5 s, the server's memory
    grows by less than 60 MB, and the slow client gets 408 after the deadline."""
    _, port, world, pid = served
    token = world.tokens["clinic_a"]
    baseline = _rss(pid)
    stop = threading.Event()
    slow_answers: list[int] = []
    attackers = [
        *(threading.Thread(target=_huge_declared, args=(port, stop)) for _ in range(3)),
        *(threading.Thread(target=_chunked_forever, args=(port, token, stop)) for _ in range(3)),
        threading.Thread(target=_slow_body, args=(port, token, stop, slow_answers)),
    ]
    for attacker in attackers:
        attacker.start()
    try:
        latencies, peak = [], baseline
        until = time.monotonic() + BODY_TIMEOUT_S + 2
        while time.monotonic() < until:
            latencies.append(_healthz_seconds(port))
            peak = max(peak, _rss(pid))
            time.sleep(0.1)
    finally:
        stop.set()
        for attacker in attackers:
            attacker.join(timeout=15)
    assert max(latencies) < HEALTH_BOUND_S, sorted(latencies)[-5:]
    assert peak - baseline < RSS_GROWTH_BOUND, (baseline, peak)
    assert slow_answers == [408]
