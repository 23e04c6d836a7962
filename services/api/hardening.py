"""Security headers on every response the application makes.

The pages load only their own scripts and styles (no inline script, no ``style=``
attribute), so the policy can say exactly that; nothing may frame them, and no
address leaks to another site in a ``Referer``.  Pages and API answers are
someone's data, so no cache keeps them; static assets are the same for everyone
and may be cached.  HSTS only when the deployment says it runs behind HTTPS (the
same switch that marks the session cookie Secure): sent over plain HTTP it would
lock a browser out of a server that has no certificate.
"""

from collections.abc import Mapping
from typing import Final

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.api.api_docs import DOCS_ASSETS

CONTENT_SECURITY_POLICY: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
HSTS: Final = "max-age=31536000; includeSubDomains"
_ALWAYS: Final = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
}


def security_headers(path: str, *, https: bool) -> dict[str, str]:
    """The headers a response to ``path`` carries (besides what the handler set)."""
    headers = dict(_ALWAYS)
    if not _is_asset(path):
        headers["Cache-Control"] = "no-store"
    if https:
        headers["Strict-Transport-Security"] = HSTS
    return headers


def _is_asset(path: str) -> bool:
    return path.startswith(("/static/", DOCS_ASSETS + "/"))


class SecurityHeaders:
    """The ASGI middleware: adds ``security_headers`` to each response's start."""

    def __init__(self, app: ASGIApp, *, https: bool) -> None:
        self.app, self.https = app, https

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = security_headers(scope["path"], https=self.https)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                _add_missing(MutableHeaders(scope=message), extra)
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _add_missing(headers: MutableHeaders, extra: Mapping[str, str]) -> None:
    for name, value in extra.items():
        if name not in headers:  # a handler's own choice (a download's caching) stands
            headers[name] = value
