"""The outbound client against real HTTP servers on loopback (admitted by an
allow-list): it connects to the address the gate checked and nowhere else, follows
no redirect, and bounds time and response size."""

import threading
import time
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from ipaddress import ip_address

import pytest

from services.delivery import REFUSED_BY_POLICY, notice_poster
from services.egress import EgressGate, IPAddress, parse_allow_list
from tests.support.postgres import free_port


class Receiver:
    """A loopback HTTP server that notes each request and answers by path."""

    def __init__(self, host: str) -> None:
        self.requests: list[tuple[str, str]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                receiver.requests.append((self.path, self.headers.get("Host", "")))
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.path == "/redirect":
                    self.send_response(307)
                    self.send_header("Location", "http://127.0.0.1/elsewhere")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                elif self.path == "/huge":
                    self.send_response(200)
                    self.send_header("Content-Length", str(1 << 34))
                    self.end_headers()
                    chunk = b"x" * 65536
                    try:
                        while True:
                            self.wfile.write(chunk)
                    except OSError:
                        return
                elif self.path == "/slow":
                    time.sleep(3)
                else:
                    self.send_response(204)
                    self.end_headers()

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                return

        self.server = ThreadingHTTPServer((host, free_port()), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receivers() -> Iterator[tuple[Receiver, Receiver]]:
    """Two receivers: one on 127.0.0.2 (the allow-list admits it), one on 127.0.0.1
    (refused), on the same port so only the address tells them apart."""
    allowed, loopback = Receiver("127.0.0.2"), Receiver("127.0.0.1")
    yield allowed, loopback
    allowed.close()
    loopback.close()


class Resolver:
    """The gate's resolver port, answering from a script (one answer per call)."""

    def __init__(self, answers: list[list[IPAddress]]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    def __call__(self, name: str, _port: int) -> Sequence[IPAddress]:
        self.asked.append(name)
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]


def _fixed(*answers: str) -> Resolver:
    return Resolver([[ip_address(text)] for text in answers])


ALLOW = parse_allow_list("127.0.0.2/32")
HEADERS = {"Content-Type": "application/json"}


def test_a_rebinding_name_is_connected_at_the_address_checked(
    receivers: tuple[Receiver, Receiver],
) -> None:
    """A name that answers 127.0.0.2 (admitted) and then 127.0.0.1 is resolved once per
    attempt and connected at the first answer, with its own name in Host; the loopback
    server behind the second answer never sees a connection from that attempt."""
    allowed, loopback = receivers
    resolver = _fixed("127.0.0.2", "127.0.0.1")
    post = notice_poster(EgressGate(ALLOW, resolver))
    result = post(f"http://rebind.test:{allowed.port}/hook", b"{}", HEADERS, 5.0)
    assert result.status == 204
    assert resolver.asked == ["rebind.test"]
    assert allowed.requests == [("/hook", f"rebind.test:{allowed.port}")]
    assert loopback.requests == []

    # The next attempt resolves again, gets 127.0.0.1, and is refused before connecting.
    again = post(f"http://rebind.test:{loopback.port}/hook", b"{}", HEADERS, 5.0)
    assert (again.status, again.failure) == (None, REFUSED_BY_POLICY)
    assert loopback.requests == []


def test_a_redirect_is_not_followed(receivers: tuple[Receiver, Receiver]) -> None:
    """A 307 is the answer (3xx), and its Location is never requested."""
    allowed, loopback = receivers
    post = notice_poster(EgressGate(ALLOW))
    result = post(f"http://127.0.0.2:{allowed.port}/redirect", b"{}", HEADERS, 5.0)
    assert (result.status, result.summary) == (307, "3xx")
    assert [path for path, _ in allowed.requests] == ["/redirect"]
    assert loopback.requests == []


def test_a_huge_response_is_read_only_up_to_the_bound(
    receivers: tuple[Receiver, Receiver],
) -> None:
    """A 16 GiB body ends the call after its first bytes: the status stands."""
    allowed, _ = receivers
    post = notice_poster(EgressGate(ALLOW))
    started = time.monotonic()
    result = post(f"http://127.0.0.2:{allowed.port}/huge", b"{}", HEADERS, 5.0)
    assert result.status == 200
    assert time.monotonic() - started < 2.0


def test_a_slow_receiver_is_cut_off_at_the_deadline(receivers: tuple[Receiver, Receiver]) -> None:
    """A receiver that does not answer within the attempt's time is a timeout, and
    the call returns at that time, not the receiver's."""
    allowed, _ = receivers
    post = notice_poster(EgressGate(ALLOW))
    started = time.monotonic()
    result = post(f"http://127.0.0.2:{allowed.port}/slow", b"{}", HEADERS, 0.5)
    elapsed = time.monotonic() - started
    assert (result.status, result.summary) == (None, "timeout")
    assert elapsed < 1.5


def test_a_closed_port_is_unreachable_without_detail_in_the_summary() -> None:
    """No listener: the summary is ``unreachable``; the exception stays in the detail."""
    post = notice_poster(EgressGate(ALLOW))
    result = post(f"http://127.0.0.2:{free_port()}/hook", b"{}", HEADERS, 2.0)
    assert (result.status, result.summary) == (None, "unreachable")


def test_loopback_is_refused_without_a_connection(receivers: tuple[Receiver, Receiver]) -> None:
    """Without an allow-list a loopback URL, in any spelling, is refused before any
    connection is made."""
    _, loopback = receivers
    post = notice_poster(EgressGate())
    for host in ("127.0.0.1", "2130706433", "0x7f.1", "[::ffff:127.0.0.1]"):
        result = post(f"http://{host}:{loopback.port}/hook", b"{}", HEADERS, 2.0)
        assert result.failure == REFUSED_BY_POLICY, host
    assert loopback.requests == []
