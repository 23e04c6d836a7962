"""The API's HTTP/1.1 under awkward clients: a head over 16 KiB gets 431 and a closed
connection, sent at once or a few bytes at a time, while heads up to the bound are
served, each keep-alive or pipelined request counted on its own; a chunked body's
trailers are bounded the same way; an ambiguous body length is refused, idle
connections close and past the concurrency limit new work gets 503.  ``coreline api``
runs as a real server on loopback."""

import select
import socket
import time
from collections.abc import Iterator

import pytest

from services.eventstore import upgrade_schema
from tests.support.platform_processes import serving_api
from tests.support.postgres import free_port

BOUND = 16 * 1024
_READ_S = 5.0


@pytest.fixture(scope="module")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """An empty SQLite store, shared by the module."""
    url = f"sqlite:///{tmp_path_factory.mktemp('heads') / 'coreline.db'}"
    upgrade_schema(url)
    return url


@pytest.fixture(scope="module")
def port(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """``coreline api`` on loopback with its default limits."""
    api_port = free_port()
    log = tmp_path_factory.mktemp("api") / "api.log"
    with serving_api(api_port, log, database_url=database_url):
        yield api_port


@pytest.fixture(scope="module")
def tight_port(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """``coreline api`` with the lowest concurrency limit (8) and a 1 s keep-alive."""
    api_port = free_port()
    log = tmp_path_factory.mktemp("tight") / "api.log"
    with serving_api(
        api_port, log, database_url=database_url, api_limit_concurrency="8",
        api_keep_alive_s="1",
    ):  # fmt: skip
        yield api_port


def _head(size: int, path: str = "/healthz") -> bytes:
    """A GET of ``path`` whose head (request line to the blank line) is ``size`` bytes."""
    start = f"GET {path} HTTP/1.1\r\nHost: x\r\nX-Padding: ".encode()
    return start + b"p" * (size - len(start) - 4) + b"\r\n\r\n"


def _answers(raw: socket.socket, count: int) -> list[int]:
    """The status codes of the next ``count`` responses (bodies read by length)."""
    buffer = b""
    statuses: list[int] = []
    deadline = time.monotonic() + _READ_S
    while len(statuses) < count:
        while b"\r\n\r\n" not in buffer:
            buffer += _recv(raw, deadline)
        head, buffer = buffer.split(b"\r\n\r\n", 1)
        lines = head.split(b"\r\n")
        statuses.append(int(lines[0].split()[1]))
        length = next(
            int(line.split(b":")[1])
            for line in lines
            if line.lower().startswith(b"content-length:")
        )
        while len(buffer) < length:
            buffer += _recv(raw, deadline)
        buffer = buffer[length:]
    return statuses


def _recv(raw: socket.socket, deadline: float) -> bytes:
    readable, _, _ = select.select([raw], [], [], max(0.0, deadline - time.monotonic()))
    assert readable, "no answer in time"
    chunk = raw.recv(65536)
    assert chunk, "closed before the answer"
    return chunk


def _closed(raw: socket.socket) -> bool:
    """Whether the server has closed the connection (end of stream or reset)."""
    readable, _, _ = select.select([raw], [], [], _READ_S)
    if not readable:
        return False
    try:
        return raw.recv(65536) == b""
    except ConnectionResetError:
        return True


def test_a_head_over_the_bound_gets_431_and_a_closed_connection(port: int) -> None:
    """A head one byte over 16 KiB is answered 431 and the connection closed."""
    with socket.create_connection(("127.0.0.1", port), timeout=_READ_S) as raw:
        raw.sendall(_head(BOUND + 1))
        assert _answers(raw, 1) == [431]
        assert _closed(raw)


def test_heads_up_to_the_bound_are_served_each_on_its_own(port: int) -> None:
    """Heads of exactly 16 KiB are served, several on one keep-alive connection, and
    two pipelined heads of 10 KiB each sent in one write are both served: the count
    starts again with every request."""
    with socket.create_connection(("127.0.0.1", port), timeout=_READ_S) as raw:
        for _ in range(3):
            raw.sendall(_head(BOUND))
            assert _answers(raw, 1) == [200]
        raw.sendall(_head(10 * 1024) * 2)
        assert _answers(raw, 2) == [200, 200]
        raw.sendall(_head(BOUND + 1))
        assert _answers(raw, 1) == [431]


def test_a_dribbled_endless_head_is_refused_once_over_the_bound(port: int) -> None:
    """A client that sends an endless header 256 bytes at a time is refused with 431
    and cut off having sent little more than the bound, not read without end."""
    with socket.create_connection(("127.0.0.1", port), timeout=_READ_S) as raw:
        raw.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Endless: ")
        sent = 0
        while sent < 64 * BOUND:
            try:
                raw.sendall(b"e" * 256)
            except OSError:
                break  # reset after the refusal
            sent += 256
            if select.select([raw], [], [], 0.002)[0]:
                break
        assert sent <= BOUND + 4096, sent
        assert _answers(raw, 1) == [431]
        assert _closed(raw)


def test_endless_trailers_close_the_connection(port: int) -> None:
    """A chunked body whose trailer never ends is cut off once over the bound (the
    answer to its request already sent, the connection only closes)."""
    with socket.create_connection(("127.0.0.1", port), timeout=_READ_S) as raw:
        raw.sendall(
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"2\r\n{}\r\n0\r\nX-Trailer: "
        )
        assert _answers(raw, 1) == [200]
        sent = 0
        while sent < 64 * BOUND:
            try:
                raw.sendall(b"t" * 1024)
            except OSError:
                break
            sent += 1024
            if select.select([raw], [], [], 0.002)[0]:
                break
        assert sent <= BOUND + 8192, sent
        assert _closed(raw)


def test_a_refusal_leaves_other_connections_served(port: int) -> None:
    """After a head four times the bound is refused, a new connection is served."""
    with socket.create_connection(("127.0.0.1", port), timeout=_READ_S) as raw:
        raw.sendall(_head(4 * BOUND))
        assert _answers(raw, 1) == [431]
    with socket.create_connection(("127.0.0.1", port), timeout=_READ_S) as raw:
        raw.sendall(_head(200))
        assert _answers(raw, 1) == [200]


def test_a_body_of_two_lengths_is_a_bad_request(port: int) -> None:
    """A request that gives both Content-Length and chunked Transfer-Encoding (the
    ground of request smuggling) is answered 400 and its connection closed."""
    with socket.create_connection(("127.0.0.1", port), timeout=_READ_S) as raw:
        raw.sendall(
            b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        assert _answers(raw, 1) == [400]
        assert _closed(raw)


def test_an_idle_keep_alive_connection_is_closed(tight_port: int) -> None:
    """A connection left idle after its answer is closed once the keep-alive (1 s)
    runs out."""
    with socket.create_connection(("127.0.0.1", tight_port), timeout=_READ_S) as raw:
        raw.sendall(_head(200))
        assert _answers(raw, 1) == [200]
        started = time.monotonic()
        assert _closed(raw)
        assert 0.5 < time.monotonic() - started < 3.0


def test_past_the_concurrency_limit_new_work_gets_503(tight_port: int) -> None:
    """With 8 connections open, a request on a ninth is answered 503."""
    held = [socket.create_connection(("127.0.0.1", tight_port), timeout=_READ_S) for _ in range(8)]
    try:
        time.sleep(0.2)  # each accepted before the ninth asks
        with socket.create_connection(("127.0.0.1", tight_port), timeout=_READ_S) as raw:
            raw.sendall(_head(200))
            assert _answers(raw, 1) == [503]
    finally:
        for connection in held:
            connection.close()
