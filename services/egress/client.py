"""The platform's one outbound HTTP client (the only module that imports httpcore).

``post`` sends one request to a ``Destination`` the gate approved: httpcore builds
the request and speaks HTTP/1.1 and TLS, while the network backend below hands it a
socket to the checked address whatever name it asks for, so nothing resolves the
name a second time.  TLS still names the URL's host (SNI) and verifies the
certificate against it, and the ``Host`` header is the URL's.  httpcore follows no
redirects.  Every socket operation is bounded by what is left of one deadline, so
neither a slow connect, a server that drips its headers, nor an endless body holds
a caller longer than ``total_s``; at most ``max_response_bytes`` of a body are read.
"""

import enum
import ssl
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

import httpcore

from services.egress.gate import Destination

DEFAULT_MAX_RESPONSE_BYTES: Final = 64 * 1024


@dataclass(frozen=True, slots=True)
class Limits:
    total_s: float = 10.0
    """From the first connect to the last byte read."""
    connect_s: float = 5.0
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES

    def __post_init__(self) -> None:
        if self.total_s <= 0 or self.connect_s <= 0 or self.max_response_bytes < 0:
            raise ValueError("egress limits must be positive")


class Failure(enum.StrEnum):
    """Why a request got no HTTP answer, in words that reveal nothing about the
    network behind the address (no exception text, no errno)."""

    TIMEOUT = "timeout"
    UNREACHABLE = "unreachable"
    TLS = "tls failed"
    INVALID_RESPONSE = "invalid response"


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: bytes
    """At most ``Limits.max_response_bytes`` of it."""
    headers: tuple[tuple[bytes, bytes], ...] = ()


@dataclass(frozen=True, slots=True)
class NoAnswer:
    failure: Failure
    detail: str
    """The exception's type, for the operator's log only."""


def post(
    destination: Destination,
    body: bytes,
    headers: Mapping[str, str],
    limits: Limits,
    ssl_context: ssl.SSLContext | None = None,
) -> Answer | NoAnswer:
    """POST ``body``; never raises for anything the receiver or the network does."""
    return send("POST", destination, body, headers.items(), limits, ssl_context)


def send(
    method: str,
    destination: Destination,
    body: bytes,
    headers: Iterable[tuple[str, str]],
    limits: Limits,
    ssl_context: ssl.SSLContext | None = None,
) -> Answer | NoAnswer:
    """Send one request; never raises for anything the receiver or the network does.
    ``headers`` must not name ``Host``: it is the destination's."""
    deadline = time.monotonic() + limits.total_s
    backend = _PinnedBackend(destination, deadline)
    host_header = f"[{destination.host}]" if ":" in destination.host else destination.host
    default_port = 443 if destination.scheme == "https" else 80
    if destination.port != default_port:
        host_header += f":{destination.port}"
    request_headers = [("Host", host_header), *headers]
    timeouts = {"connect": limits.connect_s, "read": limits.total_s, "write": limits.total_s,
                "pool": limits.total_s}  # fmt: skip
    with httpcore.ConnectionPool(
        ssl_context=ssl_context, max_connections=1, retries=0, network_backend=backend
    ) as pool:
        try:
            with pool.stream(
                method,
                httpcore.URL(
                    scheme=destination.scheme, host=destination.host, port=destination.port,
                    target=destination.target,
                ),
                headers=request_headers,
                content=body,
                extensions={"timeout": timeouts},
            ) as response:  # fmt: skip
                body_read = _bounded_body(response, limits.max_response_bytes)
                return Answer(response.status, body_read, tuple(response.headers))
        except httpcore.TimeoutException as error:
            return NoAnswer(Failure.TIMEOUT, type(error).__name__)
        except httpcore.ConnectError as error:
            tls = isinstance(error.__cause__ or error.__context__, ssl.SSLError)
            return NoAnswer(Failure.TLS if tls else Failure.UNREACHABLE, type(error).__name__)
        except (httpcore.NetworkError, OSError) as error:
            return NoAnswer(Failure.UNREACHABLE, type(error).__name__)
        except (httpcore.ProtocolError, httpcore.UnsupportedProtocol) as error:
            return NoAnswer(Failure.INVALID_RESPONSE, type(error).__name__)


def _bounded_body(response: httpcore.Response, limit: int) -> bytes:
    """Up to ``limit`` bytes of the body; once the status is in, a body cut short (too
    long, too slow, broken off) still leaves the answer the status gave."""
    taken = bytearray()
    stream = response.stream
    if not isinstance(stream, Iterable):
        return b""
    try:
        for chunk in stream:
            taken += chunk[: limit - len(taken)]
            if len(taken) >= limit:
                break
    except (httpcore.TimeoutException, httpcore.NetworkError, httpcore.ProtocolError):
        pass
    return bytes(taken)


class _PinnedBackend(httpcore.NetworkBackend):
    """Connects to the destination's checked address, for the one name it was
    checked for, within the deadline."""

    def __init__(self, destination: Destination, deadline: float) -> None:
        self._destination = destination
        self._deadline = deadline
        self._sockets = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        if (host, port) != (self._destination.host, self._destination.port):
            raise httpcore.ConnectError("only the checked destination may be reached")
        stream = self._sockets.connect_tcp(
            str(self._destination.address), port,
            timeout=_within(self._deadline, timeout, httpcore.ConnectTimeout),
            local_address=local_address, socket_options=socket_options,
        )  # fmt: skip
        return _DeadlineStream(stream, self._deadline)

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        raise httpcore.ConnectError("outbound calls reach TCP addresses only")

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


class _DeadlineStream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream, deadline: float) -> None:
        self._inner = inner
        self._deadline = deadline

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _within(self._deadline, timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _within(self._deadline, timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        inner = self._inner.start_tls(
            ssl_context, server_hostname, _within(self._deadline, timeout, httpcore.ConnectTimeout)
        )
        return _DeadlineStream(inner, self._deadline)

    def get_extra_info(self, info: str) -> object:
        return self._inner.get_extra_info(info)


def _within(deadline: float, timeout: float | None, expired: type[Exception]) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise expired("the call's time is up")
    return left if timeout is None else min(timeout, left)
