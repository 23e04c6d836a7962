"""Cross-site request forgery: what makes a state-changing request our own.

Two checks, both required for every form post and every cookie-authenticated API
call that changes something:

* the request comes from this origin: ``Origin`` (when sent) names this host, and
  ``Sec-Fetch-Site`` (when sent) is ``same-origin`` or ``none``;
* it carries a token bound to a secret the browser holds in an HttpOnly cookie (the
  session id once signed in; before that, a pre-session cookie set by the login
  page).  The token is a digest of that secret with a label of its own, so a page
  can carry it without revealing the secret, and no other site can compute it:
  it can neither read the cookie nor our pages.
"""

import hashlib
import hmac
import secrets
from collections.abc import Mapping
from typing import Final
from urllib.parse import urlsplit

FIELD: Final = "csrf_token"
"""The hidden form field."""
HEADER: Final = "X-CSRF-Token"
"""The header the dashboard's scripts send with a cookie-authenticated API call."""
PRE_SESSION_COOKIE: Final = "coreline_login"
_LABEL: Final = b"coreline csrf v1\x00"
_FOREIGN_FETCH: Final = frozenset({"cross-site", "same-site"})


def new_pre_session_secret() -> str:
    return secrets.token_urlsafe(32)


def token_for(secret: str) -> str:
    return hashlib.sha256(_LABEL + secret.encode()).hexdigest()


def token_matches(secret: str | None, presented: str | None) -> bool:
    if not secret or not presented:
        return False
    return hmac.compare_digest(token_for(secret), presented)


def foreign_origin(headers: Mapping[str, str], host: str) -> str | None:
    """Why the request comes from another site, or ``None`` when nothing says so."""
    fetch_site = headers.get("sec-fetch-site")
    if fetch_site in _FOREIGN_FETCH:
        return f"the request came from another site (Sec-Fetch-Site: {fetch_site})"
    # "null" says nothing: browsers send it for our own posts under the
    # no-referrer policy the dashboard serves; Sec-Fetch-Site and the token decide.
    origin = headers.get("origin")
    if origin not in {None, "null"} and urlsplit(origin).netloc != host:
        return f"the request came from another origin ({origin[:100]})"
    return None
