"""The hot reads (a device, a page of devices or sessions) in one trip through the
thread pool, past FastAPI's per-request dependency solving.

A read route states its checks as every route does (``who: DeviceReader, db: Db``
and its validated parameters), so the OpenAPI document, the authorization matrix
and every refusal stay what FastAPI makes of them.  For the common request (a
bearer token and parameters that validate) the route skips the dependency tree:
it validates the path and query parameters with the route's own fields, then makes
one trip to the thread pool that checks the read-model connection out, looks the
token up on it (on every request, never cached: a revoked token is refused on the
next), admits the principal's role for the route's action, and runs the handler on
that connection.  A handler marked ``one_statement`` is served instead by a read
that looks the token up inside its own statement.  Any other request (no bearer
token, a session cookie, a parameter that does not validate, an overridden
dependency) takes FastAPI's own way, whose refusals and their order (401 and 403
before 422) are the route's as declared.

The dependency tree cost about a sixth of a device detail's CPU and the second trip
through the pool another twentieth (``BENCHMARKS.md``, API)."""

import inspect
from collections.abc import Callable, Coroutine
from functools import partial
from typing import Any, TypeVar, get_type_hints

import fastapi.routing
from fastapi import Request, Response
from fastapi._compat import ModelField
from fastapi.dependencies.models import Dependant
from fastapi.dependencies.utils import request_params_to_args
from fastapi.routing import APIRoute
from fastapi.security.utils import get_authorization_scheme_param
from sqlalchemy import Connection
from starlette.concurrency import run_in_threadpool

from services.api.access import Action
from services.api.deps import context, read_connection, token_joined_read, token_read

Handler = Callable[[Request], Coroutine[Any, Any, Response]]
F = TypeVar("F", bound=Callable[..., Response])

JoinedRead = Callable[[Connection, str, Action, dict[str, Any]], Response]
"""A read that looks the bearer token up in its own statement: given the connection,
the token's lookup digest, the route's action and the parameters, it refuses with
``deps.admitted`` before it uses what it read (``deps.token_joined_read``)."""


def one_statement(read: JoinedRead) -> Callable[[F], F]:
    """Marks a read route's handler as served, for a bearer token, by ``read``: the
    token's lookup and the read in one statement, so one round trip to the database
    fewer.  The handler stays what every other request (a cookie, an override, a
    parameter that does not validate) and the OpenAPI document go by."""

    def mark(handler: F) -> F:
        handler.one_statement = read  # type: ignore[attr-defined]  # read by _Plan.of
        return handler

    return mark


class OneTripRead(APIRoute):
    """Shortens a synchronous handler that takes ``who`` (an ``allowed(action)``
    check), ``db`` (the read connection) and path and query parameters, and is
    declared to return a ``Response``; any other route of the router is FastAPI's."""

    def get_route_handler(self) -> Handler:
        general = super().get_route_handler()
        effective = _effective(self)
        plan = _Plan.of(effective.dependant)
        if plan is None:  # not a read this route class knows how to shorten
            return general
        overrides = effective.dependency_overrides_provider

        async def handler(request: Request) -> Response:
            if overrides is not None and getattr(overrides, "dependency_overrides", None):
                return await general(request)
            scheme, token = get_authorization_scheme_param(request.headers.get("authorization"))
            if not token or scheme.lower() != "bearer":
                return await general(request)
            values = plan.validated(request)
            if values is None:  # FastAPI's way: the refusals in the declared order
                return await general(request)
            engine = context(request).engine
            if plan.joined is not None:  # the token looked up in the read's statement
                call = partial(token_joined_read, engine, token, plan.action, plan.joined, values)
            else:
                call = partial(token_read, engine, token, plan.action, plan.read, values)
            found: Response = await run_in_threadpool(call)
            return found

        return handler


class _Plan:
    """What a read route needs: its action, its parameters' fields and the handler with
    the principal and the connection bound by name."""

    def __init__(
        self, dependant: Dependant, call: Callable[..., Any], action: Action, who: str, db: str
    ) -> None:
        self.dependant = dependant
        self.call = call
        self.defaults = {
            field.alias: (field.name, field.default)
            for field in dependant.query_params
            if _plain_default(field)
        }
        """The query parameters a request may leave out, by name, with the value they
        then take (what FastAPI gives them, without validating it each time)."""
        self.action = action
        self.who = who
        self.db = db
        self.joined: JoinedRead | None = getattr(call, "one_statement", None)

    @classmethod
    def of(cls, dependant: Dependant) -> "_Plan | None":
        call = dependant.call
        if call is None or _is_coroutine(call) or not _returns_response(call):
            return None
        if dependant.header_params or dependant.cookie_params or dependant.body_params:
            return None
        if any((
            dependant.request_param_name, dependant.websocket_param_name,
            dependant.http_connection_param_name, dependant.response_param_name,
            dependant.background_tasks_param_name, dependant.security_scopes_param_name,
        )):  # fmt: skip
            return None
        who = db = None
        action: Action | None = None
        for sub in dependant.dependencies:
            admits = getattr(sub.call, "admits", None)
            if isinstance(admits, Action) and who is None:
                who, action = sub.name, admits
            elif sub.call is read_connection and db is None:
                db = sub.name
            else:
                return None
        if who is None or db is None or action is None:
            return None
        return cls(dependant, call, action, who, db)

    def validated(self, request: Request) -> dict[str, Any] | None:
        """The path and query parameters as the handler takes them, or ``None`` when one
        does not validate."""
        path, path_errors = request_params_to_args(self.dependant.path_params, request.path_params)
        given = request.query_params
        query, query_errors = request_params_to_args(
            [
                f
                for f in self.dependant.query_params
                if f.alias in given or f.alias not in self.defaults
            ],
            given,
        )
        if path_errors or query_errors:
            return None
        left_out = {
            name: default for alias, (name, default) in self.defaults.items() if alias not in given
        }
        return path | query | left_out

    def read(self, who: object, db: object, values: dict[str, Any]) -> Response:
        found = self.call(**values, **{self.who: who, self.db: db})
        if not isinstance(found, Response):
            raise TypeError(f"{self.call.__name__} returns {type(found).__name__}, not a Response")
        return found


def _effective(route: APIRoute) -> Any:
    """The route as FastAPI's own handler is built from it where it is included: its
    dependant (an including router's dependencies are part of it) and the provider of
    dependency overrides (the application)."""
    variable = getattr(fastapi.routing, "_effective_route_context_var", None)
    effective = variable.get() if variable is not None else None
    if effective is not None and getattr(effective, "original_route", None) is route:
        return effective
    return route


def _plain_default(field: ModelField) -> bool:
    """An optional parameter under its own name whose default is an immutable scalar,
    as FastAPI gives it when the request leaves it out (not validated again)."""
    info = field.field_info
    return (
        not info.is_required()
        and not info.validate_default
        and info.validation_alias is None
        and (field.default is None or type(field.default) in {bool, int, float, str})
    )


def _returns_response(call: Callable[..., Any]) -> bool:
    returned = get_type_hints(call).get("return")
    return isinstance(returned, type) and issubclass(returned, Response)


def _is_coroutine(call: Callable[..., Any]) -> bool:
    return inspect.iscoroutinefunction(call) or inspect.iscoroutinefunction(
        getattr(call, "__call__", None)  # noqa: B004 - a callable object's method
    )
