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


# Each series' child kept by its labels: ``labels()`` checks and joins them and takes
# a lock on every call, twice a request; the routes, methods and statuses are few.
_latency_children: Final[dict[tuple[str, str], Histogram]] = {}
_request_children: Final[dict[tuple[str, str, int], Counter]] = {}


def observe_latency(scope: Scope, seconds: float) -> None:
    key = (scope["method"], _template(scope))
    child = _latency_children.get(key)
    if child is None:
        child = _latency_children.setdefault(key, LATENCY.labels(*key))
    child.observe(seconds)


def count_request(scope: Scope, status: int) -> None:
    key = (scope["method"], _template(scope), status)
    child = _request_children.get(key)
    if child is None:
        child = _request_children.setdefault(key, REQUESTS.labels(key[0], key[1], str(status)))
    child.inc()


def _template(scope: Scope) -> str:
    return str(getattr(scope.get("route"), "path", "unmatched"))
