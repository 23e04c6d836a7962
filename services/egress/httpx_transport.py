"""The egress policy under libraries that speak httpx (Authlib's OpenID Connect
client): an ``httpx`` transport that sends every request through the gate and the
pinned client, so such a library reaches no address the policy refuses, follows no
redirect on its own, and is bounded in time and size like a webhook delivery."""

import ssl

import httpx2 as httpx

from services.egress.client import Answer, Failure, Limits, NoAnswer, send
from services.egress.gate import EgressGate, Refused, Unresolvable


class EgressTransport(httpx.BaseTransport):
    def __init__(
        self, gate: EgressGate, limits: Limits, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        self._gate = gate
        self._limits = limits
        self._ssl_context = ssl_context

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        verdict = self._gate.check(str(request.url))
        if isinstance(verdict, Refused | Unresolvable):
            raise httpx.ConnectError(f"refused by the egress policy: {verdict.reason}")
        headers = [
            (name.decode("latin-1"), value.decode("latin-1"))
            for name, value in request.headers.raw
            if name.lower() != b"host"
        ]
        answer = send(
            request.method, verdict, request.read(), headers, self._limits, self._ssl_context
        )
        if isinstance(answer, NoAnswer):
            raise _failure(answer)
        return _response(answer, request)


def _failure(answer: NoAnswer) -> httpx.TransportError:
    if answer.failure is Failure.TIMEOUT:
        return httpx.TimeoutException(answer.failure.value)
    if answer.failure is Failure.INVALID_RESPONSE:
        return httpx.RemoteProtocolError(answer.failure.value)
    return httpx.ConnectError(answer.failure.value)


def _response(answer: Answer, request: httpx.Request) -> httpx.Response:
    return httpx.Response(
        answer.status, headers=list(answer.headers), content=answer.body, request=request
    )
