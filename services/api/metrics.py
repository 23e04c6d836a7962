"""The API's Prometheus metrics, labelled by route template (never by raw path, which
would make a series per device).

They are served by a listener of their own (``coreline api --metrics-port``), never
on the public API port: request counts by route and status tell an outsider more
about the fleet's use than they need to know.
"""

import time
from typing import Final

from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUESTS: Final = Counter(
    "coreline_api_requests_total", "HTTP requests answered", ["method", "route", "status"]
)
LATENCY: Final = Histogram(
    "coreline_api_request_seconds",
    "Time to answer (to the first byte of a streamed body)",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)


class RequestMetrics:
    """The ASGI middleware: counts and times each request by its route's template.

    Pure ASGI (not ``BaseHTTPMiddleware``), so nothing between the client and the
    handler holds the request or the response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = "500"  # what the client sees when the handler fails before answering

        async def observing_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = str(message["status"])
                LATENCY.labels(scope["method"], _template(scope)).observe(
                    time.perf_counter() - started
                )
            await send(message)

        try:
            await self.app(scope, receive, observing_send)
        finally:
            REQUESTS.labels(scope["method"], _template(scope), status).inc()


def _template(scope: Scope) -> str:
    return str(getattr(scope.get("route"), "path", "unmatched"))
