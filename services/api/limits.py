"""Bounded requests: no body larger than its route allows, none slower than a
deadline, and none at all from a client that presents no credential where one is
needed.

Applied by the pure ASGI middleware in front of every handler and parser
(``services/api/front.py``): a declared ``Content-Length`` over the limit is refused
before a byte of the body is read; a chunked or under-declared body is counted as
it arrives and cut off at the limit.
Starlette's ``BaseHTTPMiddleware`` would not do, because it hands the handler a
request it has already wrapped, after the parsing decisions are made.

Refusals mid-body are raised as an ``HTTPException`` from ``receive``: FastAPI's body
parsing lets those through (anything else it turns into a 400), and the problem
handlers render them.  The response says ``Connection: close``, so the server stops
reading what the client still sends instead of draining it.
"""

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, Final

from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, RouteContext, iter_route_contexts
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import cookie_parser
from starlette.responses import RedirectResponse, Response
from starlette.routing import Match
from starlette.types import Message, Receive, Scope

from services.api.problems import Problem, bad_request, problem_json, unauthorized

_API_PATHS: Final = "/api/"
CLOSE: Final = {"Connection": "close"}
_MAX_CREDENTIAL: Final = 4096
"""Longer than any token or session id the platform issues; longer is not a credential."""


@dataclass(frozen=True, slots=True)
class RequestLimits:
    max_json_bytes: int = 64 * 1024
    """API routes take small JSON documents."""
    max_form_bytes: int = 16 * 1024
    """Dashboard pages take small forms (log-in, a note on an alert)."""
    body_timeout_s: float = 10.0
    """From the request's headers to the last byte of its body."""

    def body_limit(self, path: str) -> int:
        return self.max_json_bytes if path.startswith(_API_PATHS) else self.max_form_bytes


class BodyRefused(HTTPException):
    """A body over its limit, or too slow: raised from ``receive`` mid-read."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.status, problem.detail, headers=CLOSE)
        self.problem = problem


def too_large(path: str, limit: int) -> Problem:
    return Problem(
        413, "content-too-large", "Content too large", f"{path} accepts at most {limit} bytes"
    )


def too_slow(timeout_s: float) -> Problem:
    return Problem(
        408, "request-timeout", "Request timeout", f"the body did not arrive within {timeout_s:g} s"
    )


class Guard(Enum):
    BEARER = "bearer"
    """An API route: a bearer token (or the dashboard's session cookie)."""
    SESSION = "session"
    """A dashboard page: the session cookie."""


def declared_length(headers: Headers) -> int | Problem | None:
    """The declared body length; ``None`` when undeclared; a problem when nonsense."""
    text = headers.get("content-length")
    if text is None:
        return None
    if not text.isdigit() or len(text) > 18:
        return bad_request(f"Content-Length {text[:40]!r} is not a byte count")
    return int(text)


def carries_body(headers: Headers, length: int | None) -> bool:
    return bool(length) or "transfer-encoding" in headers


def presents_credential(headers: Headers, guard: Guard, session_cookie: str) -> bool:
    """Whether there is something to check at all; the check itself stays with the
    route's own dependency, which runs after the body is read."""
    session = cookie_parser(headers.get("cookie", "")).get(session_cookie, "")
    if 0 < len(session) <= _MAX_CREDENTIAL:
        return True
    if guard is Guard.SESSION:
        return False
    scheme, _, token = headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and 0 < len(token.strip()) <= _MAX_CREDENTIAL


def _needs(dependant: Dependant, checks: frozenset[Callable[..., Any]]) -> bool:
    if dependant.call in checks:
        return True
    return any(_needs(child, checks) for child in dependant.dependencies)


@dataclass(frozen=True, slots=True)
class CredentialChecks:
    """The dependencies that authenticate: a route depending on one needs a credential."""

    bearer: frozenset[Callable[..., Any]]
    session: frozenset[Callable[..., Any]]
    session_cookie: str

    def guards(self, routes: Sequence[Any]) -> list[tuple[RouteContext, Guard]]:
        """Each route that needs a credential, as the router will match it (routers
        included into the application are flattened, their prefixes applied)."""
        found: list[tuple[RouteContext, Guard]] = []
        for route in iter_route_contexts(routes):
            if not isinstance(route.original_route, APIRoute):
                continue
            if _needs(route.dependant, self.bearer):
                found.append((route, Guard.BEARER))
            elif _needs(route.dependant, self.session):
                found.append((route, Guard.SESSION))
        return found


class RequestBounds:
    """Size, time and credential presence, judged before any handler
    (``services.api.front.Front`` applies them to every request)."""

    def __init__(self, limits: RequestLimits, checks: CredentialChecks) -> None:
        self.limits, self.checks = limits, checks
        self._guards: list[tuple[RouteContext, Guard]] | None = None

    def refusal(self, scope: Scope) -> Response | None:
        """The answer to a request refused before its body is read, or ``None``."""
        return self._refusal(scope)

    def body(self, scope: Scope, receive: Receive) -> Receive:
        """``receive`` that refuses a body over the path's limit or too slow."""
        path = scope["path"]
        bounded = _BoundedBody(
            receive, self.limits.body_limit(path), path, self.limits.body_timeout_s
        )
        return bounded.receive

    def _refusal(self, scope: Scope) -> Response | None:
        headers = Headers(scope=scope)
        length = declared_length(headers)
        if isinstance(length, Problem):
            return problem_json(length, CLOSE)
        path: str = scope["path"]
        limit = self.limits.body_limit(path)
        if length is not None and length > limit:
            return problem_json(too_large(path, limit), CLOSE)
        if not carries_body(headers, length):
            return None
        guard = self._guard(scope)
        if guard is None or presents_credential(headers, guard, self.checks.session_cookie):
            return None
        if guard is Guard.SESSION:
            return RedirectResponse("/login", status_code=303, headers=CLOSE)
        detail = "send a bearer token: Authorization: Bearer clt_…"
        return problem_json(unauthorized(detail), CLOSE)

    def _guard(self, scope: Scope) -> Guard | None:
        if self._guards is None:
            # Starlette puts the application itself in the scope before any middleware.
            self._guards = self.checks.guards(scope["app"].routes)
        for route, guard in self._guards:
            match, _ = route.matches(scope)
            if match is Match.FULL:
                return guard
        return None


class _BoundedBody:
    """``receive`` that counts the body and keeps to a deadline until the body ends."""

    def __init__(self, receive: Receive, limit: int, path: str, timeout_s: float) -> None:
        self._receive, self._limit, self._path = receive, limit, path
        self._timeout_s = timeout_s
        self._deadline = asyncio.get_running_loop().time() + timeout_s
        self._received = 0
        self._complete = False

    async def receive(self) -> Message:
        if self._complete:  # after the body: disconnect notices, never deadlines
            return await self._receive()
        try:
            async with asyncio.timeout_at(self._deadline):
                message = await self._receive()
        except TimeoutError:
            raise BodyRefused(too_slow(self._timeout_s)) from None
        if message["type"] != "http.request":
            return message
        self._received += len(message.get("body", b""))
        if self._received > self._limit:
            raise BodyRefused(too_large(self._path, self._limit))
        self._complete = not message.get("more_body", False)
        return message
