"""Request dependencies: the principal behind the bearer token, a read-model
connection, an event store, and the checks every route states in its signature."""

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Annotated, Final

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Connection, Engine

from services.api.access import Action, Principal
from services.api.problems import forbidden, unauthorized
from services.api.store_pool import StorePool
from services.api.tokens import authenticate
from services.eventstore import EventStore
from transport import BrokerAddress

SESSION_COOKIE: Final = "coreline_session"
_bearer = HTTPBearer(auto_error=False, description="A token from `coreline token create`.")


@dataclass(frozen=True, slots=True)
class ApiContext:
    engine: Engine
    """Read models, tokens, policies and webhooks."""
    stores: StorePool
    broker: BrokerAddress
    master_key: bytes | None


def context(request: Request) -> ApiContext:
    found: ApiContext = request.app.state.context
    return found


Context = Annotated[ApiContext, Depends(context)]


def read_connection(api: Context) -> Iterator[Connection]:
    with api.engine.connect() as connection:
        yield connection


def event_store(api: Context) -> Iterator[EventStore]:
    with api.stores.borrow() as store:
        yield store


Db = Annotated[Connection, Depends(read_connection)]
Store = Annotated[EventStore, Depends(event_store)]


def principal(
    api: Context, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Principal:
    if credentials is None:
        raise unauthorized("send a bearer token: Authorization: Bearer clt_…")
    found = authenticate(api.engine, credentials.credentials)
    if found is None:
        raise unauthorized("the token is unknown or revoked")
    return found


def allowed(action: Action) -> Callable[[Principal], Principal]:
    """A dependency that admits principals whose role may take ``action`` (else 403)."""

    def check(who: Annotated[Principal, Depends(principal)]) -> Principal:
        if not who.may(action):
            raise forbidden(f"a {who.role.value} token may not {action.value.replace('_', ' ')}")
        return who

    return check


DeviceReader = Annotated[Principal, Depends(allowed(Action.READ_DEVICES))]
DeviceManager = Annotated[Principal, Depends(allowed(Action.MANAGE_DEVICES))]
SessionReader = Annotated[Principal, Depends(allowed(Action.READ_SESSIONS))]
AlertReader = Annotated[Principal, Depends(allowed(Action.READ_ALERTS))]
AlertHandler = Annotated[Principal, Depends(allowed(Action.HANDLE_ALERTS))]
ClinicConfigurer = Annotated[Principal, Depends(allowed(Action.CONFIGURE_CLINIC))]
Auditor = Annotated[Principal, Depends(allowed(Action.AUDIT))]
Operator = Annotated[Principal, Depends(allowed(Action.READ_DEAD_LETTERS))]
