"""Request dependencies: the principal behind a bearer token or a dashboard session,
a read-model connection, an event store, and the checks every route states in its
signature.

A request borrows one read-model connection, shared by the token lookup and the
handler's reads, in autocommit: a read needs no transaction, so nothing is sent to
begin or roll one back.  Every hand-off to the thread pool and back costs more CPU
than a read-model query, so a request makes as few as it can: the bearer token's
principal checks the connection out and looks the token up in one hand-off (the
token is looked up on every request, never cached, so a revoked one is refused on
the next), the handler's ``Db`` is that same connection, and the dependencies that do
no I/O (the context, the role checks, giving the connection back) are coroutines run
on the event loop.  Giving back an autocommit connection sends nothing: no
transaction is open to roll back.  The hot reads go further (``token_read``, used by
``services/api/read_route.py``): the checkout, the token, the role and the read in
one hand-off, past the dependency tree; a device's detail looks its token up inside
its own statement (``token_joined_read``): one round trip for a fleet-wide token."""

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any, Final, TypeVar

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Connection, Engine
from starlette.concurrency import run_in_threadpool

from services.api.access import Action, Principal
from services.api.people import People, csrf, session_principal
from services.api.problems import forbidden, unauthorized
from services.api.store_pool import StorePool
from services.api.tokens import TokenRefusal, authenticate, lookup_digest, token_principal
from services.eventstore import EventStore
from services.settings import LogKeyPlace
from transport import BrokerAddress

SESSION_COOKIE: Final = "coreline_session"
"""A random session id (never a token); the server keeps only its digest."""
SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
T = TypeVar("T")
_bearer = HTTPBearer(auto_error=False, description="A token from `coreline token create`.")


@dataclass(frozen=True, slots=True)
class ApiContext:
    engine: Engine
    """Read models, tokens, people, policies and webhooks."""
    stores: StorePool
    broker: BrokerAddress
    master_key: bytes | None
    people: People
    log_key: LogKeyPlace
    """The transparency log's signing key; the API reads only its public half."""


def context(request: Request) -> ApiContext:
    found: ApiContext = request.app.state.context
    return found


async def _context(request: Request) -> ApiContext:
    """``context`` on the event loop (it only reads the application's state)."""
    return context(request)


Context = Annotated[ApiContext, Depends(_context)]


_LENT: Final = "coreline.read_connection"
"""The request scope's key for the read-model connection the request holds."""


def _checkout(engine: Engine) -> Connection:
    return engine.connect().execution_options(isolation_level="AUTOCOMMIT")


@asynccontextmanager
async def _lent(request: Request, connection: Connection) -> AsyncIterator[None]:
    """``connection`` held by the request until its response is sent, then given back
    (on the event loop: an autocommit connection has nothing to roll back)."""
    request.scope[_LENT] = connection
    try:
        yield
    finally:
        del request.scope[_LENT]
        connection.close()


async def read_connection(request: Request) -> AsyncIterator[Connection]:
    """The request's read-model connection, in autocommit: each statement stands on
    its own (write through ``api.engine.begin()``, never through this one).  The one
    the principal checked out when there is one (its owner gives it back)."""
    lent: Connection | None = request.scope.get(_LENT)
    if lent is not None:
        yield lent
        return
    connection = await run_in_threadpool(_checkout, context(request).engine)
    async with _lent(request, connection):
        yield connection


def event_store(api: Context) -> Iterator[EventStore]:
    with api.stores.borrow() as store:
        yield store


Db = Annotated[Connection, Depends(read_connection)]
Store = Annotated[EventStore, Depends(event_store)]


def signed_in_person(request: Request, api: Context) -> Principal | None:
    """The person whose live session the request's cookie names, or ``None``.  Pages
    rendered for them get the session's CSRF token (``request.state.csrf_token``)."""
    session_id = request.cookies.get(SESSION_COOKIE)
    if not session_id:
        return None
    found = session_principal(api.engine, session_id)
    if found is not None:
        request.state.csrf_token = csrf.token_for(session_id)
    return found


async def principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> AsyncIterator[Principal]:
    """A machine by its bearer token, or a person by the dashboard's session cookie.
    A cookie is sent by the browser on its own, so a cookie-authenticated change must
    also prove it comes from our own pages (origin and CSRF header).  The token is
    looked up on the request's own connection, the one its handler reads with."""
    api = context(request)  # not a dependency of its own: one fewer to solve
    if credentials is None:
        yield await run_in_threadpool(_signed_in, request, api)
        return
    lent: Connection | None = request.scope.get(_LENT)
    if lent is not None:  # the route asked for its connection first
        yield await run_in_threadpool(_token_principal, lent, credentials.credentials)
        return
    connection, found = await run_in_threadpool(_connect_and_identify, api, credentials)
    async with _lent(request, connection):
        yield found


def _connect_and_identify(
    api: ApiContext, credentials: HTTPAuthorizationCredentials
) -> tuple[Connection, Principal]:
    connection = _checkout(api.engine)
    try:
        return connection, _token_principal(connection, credentials.credentials)
    except BaseException:
        connection.close()
        raise


def _token_principal(connection: Connection, token: str) -> Principal:
    found = authenticate(connection, token)
    if isinstance(found, TokenRefusal):
        raise unauthorized(found.value)
    return found


def _signed_in(request: Request, api: ApiContext) -> Principal:
    if SESSION_COOKIE not in request.cookies:
        raise unauthorized("send a bearer token (Authorization: Bearer clt_…) or sign in")
    person = signed_in_person(request, api)
    if person is None:
        raise unauthorized("the session has ended: sign in again")
    if request.method not in SAFE_METHODS:
        check_same_site(request, request.headers.get(csrf.HEADER))
    return person


def check_same_site(request: Request, presented: str | None, secret: str | None = None) -> None:
    """Refuse (403) a state-changing request from another site or without the CSRF
    token bound to ``secret`` (by default the session id)."""
    problem = csrf.foreign_origin(request.headers, request.headers.get("host", ""))
    if problem:
        raise forbidden(problem)
    if not csrf.token_matches(secret or request.cookies.get(SESSION_COOKIE), presented):
        raise forbidden("the form is stale or from elsewhere (CSRF token missing or wrong)")


async def dashboard_form(request: Request) -> None:
    """For every dashboard form post: from this site, with the session's CSRF token."""
    form = await request.form()
    presented = form.get(csrf.FIELD)
    check_same_site(request, presented if isinstance(presented, str) else None)


SameSiteForm = Annotated[None, Depends(dashboard_form)]


def admit(who: Principal, action: Action) -> Principal:
    """``who`` when their role may take ``action``, else 403."""
    if not who.may(action):
        raise forbidden(f"a {who.role.value} may not {action.value.replace('_', ' ')}")
    return who


def allowed(action: Action) -> Callable[[Principal], Awaitable[Principal]]:
    """A dependency that admits principals whose role may take ``action`` (else 403)."""

    async def check(who: Annotated[Principal, Depends(principal)]) -> Principal:
        return admit(who, action)

    check.admits = action  # type: ignore[attr-defined]  # read by services/api/read_route.py
    return check


def token_read(
    engine: Engine,
    token: str,
    action: Action,
    read: Callable[[Principal, Connection, dict[str, Any]], T],
    values: dict[str, Any],
) -> T:
    """``read`` on a read-model connection of its own, for the principal behind the
    bearer ``token`` once admitted for ``action``: the checkout, the token's lookup
    (401 when it stands for no one) and the read in one call, so in one trip through
    the thread pool."""
    connection = _checkout(engine)
    try:
        return read(admit(_token_principal(connection, token), action), connection, values)
    finally:
        connection.close()


def admitted(token_row: Sequence[Any] | None, action: Action) -> Principal:
    """The principal a token's looked-up row (``tokens.TOKEN_LOOKUP``'s columns, or
    ``None``: no such token) stands for, admitted for ``action``; else 401 or 403, as
    ``token_read`` refuses."""
    found = token_principal(token_row)
    if isinstance(found, TokenRefusal):
        raise unauthorized(found.value)
    return admit(found, action)


def token_joined_read(
    engine: Engine,
    token: str,
    action: Action,
    read: Callable[[Connection, str, Action, dict[str, Any]], T],
    values: dict[str, Any],
) -> T:
    """``read`` on a read-model connection of its own, given the digest the bearer
    ``token`` is looked up by: a read that looks the token up in its own statement
    and refuses with ``admitted`` before it uses anything it read (401 at once for a
    token of no shape we issue)."""
    wanted = lookup_digest(token)
    if wanted is None:
        raise unauthorized(TokenRefusal.UNKNOWN.value)
    connection = _checkout(engine)
    try:
        return read(connection, wanted, action, values)
    finally:
        connection.close()


DeviceReader = Annotated[Principal, Depends(allowed(Action.READ_DEVICES))]
DeviceManager = Annotated[Principal, Depends(allowed(Action.MANAGE_DEVICES))]
SessionReader = Annotated[Principal, Depends(allowed(Action.READ_SESSIONS))]
AlertReader = Annotated[Principal, Depends(allowed(Action.READ_ALERTS))]
AlertHandler = Annotated[Principal, Depends(allowed(Action.HANDLE_ALERTS))]
ClinicConfigurer = Annotated[Principal, Depends(allowed(Action.CONFIGURE_CLINIC))]
Auditor = Annotated[Principal, Depends(allowed(Action.AUDIT))]
Operator = Annotated[Principal, Depends(allowed(Action.READ_DEAD_LETTERS))]
