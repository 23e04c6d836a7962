"""The API's Prometheus metrics, labelled by route template (never by raw path, which
would make a series per device).

They are served by a listener of their own (``coreline api --metrics-port``), never
on the public API port: request counts by route and status tell an outsider more
about the fleet's use than they need to know.
"""

from typing import Final

from prometheus_client import Counter, Histogram
from starlette.types import Scope

REQUESTS: Final = Counter(
    "coreline_api_requests_total", "HTTP requests answered", ["method", "route", "status"]
)
LATENCY: Final = Histogram(
    "coreline_api_request_seconds",
    "Time to answer (to the first byte of a streamed body)",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)


def observe_latency(scope: Scope, seconds: float) -> None:
    LATENCY.labels(scope["method"], _template(scope)).observe(seconds)


def count_request(scope: Scope, status: int) -> None:
    REQUESTS.labels(scope["method"], _template(scope), str(status)).inc()


def _template(scope: Scope) -> str:
    return str(getattr(scope.get("route"), "path", "unmatched"))
