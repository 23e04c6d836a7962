"""The one HTTP call of webhook delivery: POST a signed notice, report what came back.

Each attempt goes through the egress gate again (what a name resolves to may have
changed since the webhook was registered) and then to the very address the gate
checked (``services.egress``).  The outcome kept is a status class or a failure
word, never the receiver's body or an exception's text: a delivery log that
echoed those would describe whatever answered at the address.
"""

import ssl
from collections.abc import Callable, Mapping
from typing import Final

from services.delivery.retry import REFUSED_BY_POLICY, PostResult
from services.egress import (
    Answer,
    EgressGate,
    Failure,
    Limits,
    Refused,
    Unresolvable,
    post,
)

USER_AGENT: Final = "Coreline-Webhooks/1"
_CONNECT_TIMEOUT_S: Final = 5.0

PostNotice = Callable[[str, bytes, Mapping[str, str], float], PostResult]
"""``(url, body, headers, timeout_s) -> PostResult``: how a delivery is sent."""


def notice_poster(gate: EgressGate, ssl_context: ssl.SSLContext | None = None) -> PostNotice:
    """A ``PostNotice`` that sends only where ``gate`` allows (``ssl_context``: whom
    HTTPS receivers' certificates must chain to; the system's CAs by default)."""

    def post_notice(
        url: str, body: bytes, headers: Mapping[str, str], timeout_s: float
    ) -> PostResult:
        verdict = gate.check(url)
        if isinstance(verdict, Refused):
            return PostResult(None, REFUSED_BY_POLICY, verdict.reason)
        if isinstance(verdict, Unresolvable):
            return PostResult(None, Failure.UNREACHABLE.value, verdict.reason)
        limits = Limits(total_s=timeout_s, connect_s=min(_CONNECT_TIMEOUT_S, timeout_s))
        sent = post(verdict, body, {**headers, "User-Agent": USER_AGENT}, limits, ssl_context)
        if isinstance(sent, Answer):
            return PostResult(sent.status)
        return PostResult(None, sent.failure.value, f"{sent.detail} from {verdict.address}")

    return post_notice
