"""The API's Prometheus metrics, labelled by route template (never by raw path, which
would make a series per device)."""

import time
from collections.abc import Awaitable, Callable
from typing import Final

from fastapi import Request, Response
from prometheus_client import Counter, Histogram

REQUESTS: Final = Counter(
    "coreline_api_requests_total", "HTTP requests answered", ["method", "route", "status"]
)
LATENCY: Final = Histogram(
    "coreline_api_request_seconds",
    "Time to answer (to the first byte of a streamed body)",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)


async def record_request(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    started = time.perf_counter()
    response = await call_next(request)
    route = request.scope.get("route")
    template = getattr(route, "path", "unmatched")
    LATENCY.labels(request.method, template).observe(time.perf_counter() - started)
    REQUESTS.labels(request.method, template, str(response.status_code)).inc()
    return response
