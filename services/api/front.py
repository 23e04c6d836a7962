"""Every request's way in: one pure ASGI middleware in front of the application.

In order: the request bounds (size, time, a credential where one is needed) before
any handler reads a byte of the body; the security headers on whatever answers,
refusals included; the request metrics by route template, for what passed the
bounds.  One middleware, not three: each layer wrapped ``send`` and ``receive`` in a
closure of its own, and those calls were a tenth of a small request's CPU."""

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.api.hardening import SecurityHeaders
from services.api.limits import CLOSE, BodyRefused, CredentialChecks, RequestBounds, RequestLimits
from services.api.metrics import count_request, observe_latency
from services.api.problems import problem_json


class Front:
    def __init__(
        self, app: ASGIApp, *, https: bool, limits: RequestLimits, checks: CredentialChecks
    ) -> None:
        self.app = app
        self.security = SecurityHeaders(https=https)
        self.bounds = RequestBounds(limits, checks)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = self.security.for_path(scope["path"])

        async def secured_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                SecurityHeaders.add_missing(message, extra)
            await send(message)

        refusal = self.bounds.refusal(scope)
        if refusal is not None:
            await refusal(scope, receive, secured_send)
            return
        started = time.perf_counter()
        status = 500  # what the client sees when the handler fails before answering
        answered = False

        async def front_send(message: Message) -> None:
            nonlocal status, answered
            if message["type"] == "http.response.start":
                status, answered = message["status"], True
                observe_latency(scope, time.perf_counter() - started)
                SecurityHeaders.add_missing(message, extra)
            await send(message)

        try:
            await self.app(scope, self.bounds.body(scope, receive), front_send)
        except BodyRefused as refused:
            if answered:  # too late to answer; the server closes the connection
                raise
            status = refused.problem.status
            await problem_json(refused.problem, CLOSE)(scope, receive, secured_send)
        finally:
            count_request(scope, status)
