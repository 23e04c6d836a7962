"""Security headers on every response the application makes.

The pages load only their own scripts and styles (no inline script, no ``style=``
attribute), so the policy can say exactly that; nothing may frame them, and no
address leaks to another site in a ``Referer``.  Pages and API answers are
someone's data, so no cache keeps them; static assets are the same for everyone
and may be cached.  HSTS only when the deployment says it runs behind HTTPS (the
same switch that marks the session cookie Secure): sent over plain HTTP it would
lock a browser out of a server that has no certificate.
"""

from typing import Final

from starlette.types import Message

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
    if not is_asset(path):
        headers["Cache-Control"] = "no-store"
    if https:
        headers["Strict-Transport-Security"] = HSTS
    return headers


def is_asset(path: str) -> bool:
    return path.startswith(("/static/", DOCS_ASSETS + "/"))


RawHeaders = list[tuple[bytes, bytes]]


class SecurityHeaders:
    """``security_headers`` encoded once for pages and once for assets, added to a
    response's start (``services.api.front.Front`` calls it for every response)."""

    def __init__(self, *, https: bool) -> None:
        self._page = _encoded(security_headers("/", https=https))
        self._asset = _encoded(security_headers("/static/", https=https))

    def for_path(self, path: str) -> RawHeaders:
        return self._asset if is_asset(path) else self._page

    @staticmethod
    def add_missing(message: Message, extra: RawHeaders) -> None:
        """A handler's own choice (a download's caching) stands.  ASGI header names
        are lower case, as ``_encoded`` makes them."""
        headers: RawHeaders = list(message.get("headers", ()))
        present = {name for name, _ in headers}
        headers.extend(pair for pair in extra if pair[0] not in present)
        message["headers"] = headers


def _encoded(headers: dict[str, str]) -> RawHeaders:
    return [
        (name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()
    ]
