"""Signing people in and out of the dashboard: password (with TOTP where the role
needs it), OpenID Connect single sign-on, and log-out.

The browser holds only a random session id (``deps.SESSION_COOKIE``): HttpOnly, so
no script reads it; SameSite=Lax, so a link from elsewhere (an alert e-mail) opens
the dashboard signed in while no other site's form post carries it; Secure behind
HTTPS (``CORELINE_API_SECURE_COOKIES``).  Signing in always makes a new session,
so an id planted before sign-in is worth nothing after it.  The login form itself
is protected against CSRF by a pre-session cookie (SameSite=Strict) and the token
bound to it, so no other site can sign a browser in as someone else.
"""

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Final, Literal
from urllib.parse import quote

from fastapi import APIRouter, Depends, FastAPI, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from services.api.deps import SESSION_COOKIE, ApiContext, context
from services.api.people import (
    OidcError,
    SignInRefused,
    SignOnRefused,
    close_session,
    csrf,
    find_user,
    open_session,
)
from services.api.people.oidc import SignOnStart
from services.api.people.web_sessions import ABSOLUTE_TIMEOUT

SSO_COOKIE: Final = "coreline_sso"
_SSO_PATH: Final = "/login/sso"
_SSO_WAIT: Final = timedelta(minutes=10)
_PRE_SESSION_AGE: Final = timedelta(hours=1)
_SSO_REFUSED: Final = (
    "Single sign-on did not prove who you are. Start again, or ask your administrator."
)
_NO_ACCOUNT: Final = (
    "The provider signed you in, but no one here has an account for that address. "
    "Ask your administrator to create one."
)
REFUSED: Final = SignInRefused().message
_templates: Final = Jinja2Templates(directory=Path(__file__).parent / "templates")
_log = logging.getLogger(__name__)

Api = Annotated[ApiContext, Depends(context)]
router = APIRouter(include_in_schema=False, default_response_class=HTMLResponse)


@router.get("/login")
def login_form(
    request: Request,
    api: Api,
    error: str | None = None,
    next: str = "/",  # noqa: A002
) -> Response:
    secret = request.cookies.get(csrf.PRE_SESSION_COOKIE) or csrf.new_pre_session_secret()
    response = _login_page(request, api, secret, next, REFUSED if error else None)
    _set_cookie(request, response, csrf.PRE_SESSION_COOKIE, secret, _PRE_SESSION_AGE, "strict")
    return response


@router.post("/login")
def login(
    request: Request,
    api: Api,
    email: Annotated[str, Form(max_length=320)],
    password: Annotated[str, Form(max_length=256)],
    code: Annotated[str, Form(max_length=12)] = "",
    next: Annotated[str, Form(max_length=500)] = "/",  # noqa: A002 - the usual name
    csrf_token: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    refusal = _foreign(request, request.cookies.get(csrf.PRE_SESSION_COOKIE), csrf_token)
    if refusal is not None:
        return refusal
    address = request.client.host if request.client else "unknown"
    who = api.people.passwords.attempt(email, password, code, address)
    if isinstance(who, SignInRefused):
        back = "" if local_path(next) == "/" else f"&next={quote(local_path(next))}"
        return RedirectResponse(f"/login?error=refused{back}", status_code=303)
    return _signed_in(request, api, who.subject_id, next)


@router.post("/logout")
def logout(
    request: Request, api: Api, csrf_token: Annotated[str, Form(max_length=100)] = ""
) -> Response:
    session_id = request.cookies.get(SESSION_COOKIE)
    if session_id:
        refusal = _foreign(request, session_id, csrf_token)
        if refusal is not None:
            return refusal
        close_session(api.engine, session_id)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE)
    return response


@router.get(_SSO_PATH)
def sso_start(request: Request, api: Api, next: str = "/") -> Response:  # noqa: A002
    if api.people.sso is None:
        return _refused(request, 404, "Single sign-on is not set up on this server.")
    try:
        url, begun = api.people.sso.start(local_path(next))
    except OidcError as error:
        _log.warning("single sign-on unavailable: %s", error)
        return _refused(request, 502, "The sign-on provider cannot be reached. Try again later.")
    response = RedirectResponse(url, status_code=303)
    # Lax, not Strict: it must come back with the provider's redirect, a top-level
    # navigation from the provider's site.
    _set_cookie(request, response, SSO_COOKIE, begun.encode(), _SSO_WAIT, "lax", _SSO_PATH)
    return response


@router.get(f"{_SSO_PATH}/callback")
def sso_callback(
    request: Request, api: Api, state: str = "", code: str = "", error: str | None = None
) -> Response:
    if api.people.sso is None:
        return _refused(request, 404, "Single sign-on is not set up on this server.")
    if error is not None or not code:
        return _refused(request, 403, _SSO_REFUSED)
    try:
        begun = SignOnStart.decode(request.cookies.get(SSO_COOKIE))
        identity = api.people.sso.finish(begun, state, code)
    except SignOnRefused as refused:
        _log.warning("single sign-on refused: %s", refused)
        return _refused(request, 403, _SSO_REFUSED)
    except OidcError as failure:
        _log.warning("single sign-on unavailable: %s", failure)
        return _refused(request, 502, "The sign-on provider cannot be reached. Try again later.")
    user = find_user(api.engine, identity.email)
    if user is None or user.disabled:
        _log.warning("single sign-on by %s, who has no usable account", identity.email)
        return _refused(request, 403, _NO_ACCOUNT)
    response = _signed_in(request, api, user.user_id, begun.next)
    response.delete_cookie(SSO_COOKIE, path=_SSO_PATH)
    return response


def local_path(target: str) -> str:
    """Only a path on this server: ``next`` must not send anyone elsewhere."""
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def _signed_in(request: Request, api: ApiContext, user_id: str, next_path: str) -> Response:
    stale = request.cookies.get(SESSION_COOKIE)
    if stale:
        close_session(api.engine, stale)
    session_id = open_session(api.engine, user_id)
    response = RedirectResponse(local_path(next_path), status_code=303)
    _set_cookie(request, response, SESSION_COOKIE, session_id, ABSOLUTE_TIMEOUT, "lax")
    response.delete_cookie(csrf.PRE_SESSION_COOKIE)
    return response


def _foreign(request: Request, secret: str | None, presented: str) -> Response | None:
    """A 403 page for a post from another site or without the right token."""
    problem = csrf.foreign_origin(request.headers, request.headers.get("host", ""))
    if problem is None and csrf.token_matches(secret, presented):
        return None
    _log.warning("refused a cross-site or stale form post to %s", request.url.path)
    return _refused(
        request, 403, "This form is stale or came from another site. Reload it and try again."
    )


def _login_page(
    request: Request, api: ApiContext, secret: str, next_path: str, error: str | None
) -> Response:
    return _render(
        request, "login.html", csrf_token=csrf.token_for(secret), next=local_path(next_path),
        error=error, sso=api.people.sso is not None,
    )  # fmt: skip


def _refused(request: Request, status: int, message: str) -> Response:
    response = _render(request, "error.html", status=status, message=message)
    response.status_code = status
    return response


def _render(request: Request, template: str, **values: Any) -> Response:
    return _templates.TemplateResponse(
        request, template, {"who": None, "now": datetime.now(UTC), **values}
    )


def _set_cookie(
    request: Request,
    response: Response,
    name: str,
    value: str,
    lifetime: timedelta,
    same_site: Literal["lax", "strict"],
    path: str = "/",
) -> None:
    response.set_cookie(
        name, value, max_age=int(lifetime.total_seconds()), path=path, httponly=True,
        samesite=same_site, secure=bool(getattr(request.app.state, "secure_cookies", False)),
    )  # fmt: skip


def install_sign_in(app: FastAPI) -> None:
    app.include_router(router)
