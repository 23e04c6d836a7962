"""Errors as RFC 9457 problem details (``application/problem+json``).

Every refusal the API makes is a ``Problem``: a status, a short title, and a
detail that says what to change.  Validation errors list each bad field.
"""

from collections.abc import Mapping
from typing import Any, Final

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, ValidationError
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from services.eventstore import StoreUnavailableError

PROBLEM_JSON: Final = "application/problem+json"
_TYPE_BASE: Final = "https://coreline.dev/problems/"


class FieldError(BaseModel):
    location: str
    message: str


class ProblemDetails(BaseModel):
    """RFC 9457 problem details."""

    type: str = Field(description="A URI naming the kind of problem.")
    title: str
    status: int
    detail: str
    errors: list[FieldError] | None = Field(
        default=None, description="Each invalid field of the request (422 only)."
    )


class Problem(Exception):  # noqa: N818 - named for what it is on the wire
    def __init__(self, status: int, kind: str, title: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.kind, self.title, self.detail = status, kind, title, detail


def not_found(kind: str) -> Problem:
    """Never names the object: what a clinic may not see, it may not even confirm."""
    return Problem(404, "not-found", "Not found", f"no such {kind}, or not yours to see")


def forbidden(detail: str) -> Problem:
    return Problem(403, "forbidden", "Forbidden", detail)


def bad_request(detail: str) -> Problem:
    return Problem(400, "bad-request", "Bad request", detail)


def conflict(detail: str) -> Problem:
    return Problem(409, "conflict", "Conflict", detail)


def unauthorized(detail: str) -> Problem:
    return Problem(401, "unauthorized", "Unauthorized", detail)


def unprocessable(detail: str) -> Problem:
    return Problem(422, "invalid-request", "Invalid request", detail)


def unavailable(detail: str) -> Problem:
    return Problem(503, "unavailable", "Service unavailable", detail)


ERROR_RESPONSES: Final[dict[int | str, dict[str, Any]]] = {
    status: {"model": ProblemDetails, "content": {PROBLEM_JSON: {}}, "description": title}
    for status, title in (
        (400, "Bad request"),
        (401, "Missing, unknown or revoked token"),
        (403, "The token's role may not do this"),
        (404, "Not found, or outside the token's clinic"),
        (422, "Invalid request"),
    )
}


def problem_response(
    request: Request, problem: Problem, errors: list[FieldError] | None = None
) -> JSONResponse:
    del request  # the handlers' signature; the body depends on the problem alone
    return problem_json(problem, errors=errors)


def problem_json(
    problem: Problem,
    headers: Mapping[str, str] | None = None,
    errors: list[FieldError] | None = None,
) -> JSONResponse:
    """The problem as a response, for handlers and for middleware that has no request."""
    body = ProblemDetails(
        type=_TYPE_BASE + problem.kind,
        title=problem.title,
        status=problem.status,
        detail=problem.detail,
        errors=errors,
    )
    if problem.status == 401:
        headers = {**(headers or {}), "WWW-Authenticate": 'Bearer realm="coreline"'}
    return JSONResponse(
        body.model_dump(exclude_none=True),
        status_code=problem.status,
        media_type=PROBLEM_JSON,
        headers=headers,
    )


def install_problem_handlers(app: FastAPI) -> None:
    async def on_problem(request: Request, error: Exception) -> JSONResponse:
        if not isinstance(error, Problem):
            raise error
        return problem_response(request, error)

    async def on_http_error(request: Request, error: Exception) -> JSONResponse:
        if not isinstance(error, StarletteHTTPException):
            raise error
        problem = getattr(error, "problem", None)  # a refusal that knows its problem
        if not isinstance(problem, Problem):
            problem = _http_problem(error)
        return problem_json(problem, error.headers)

    async def on_unrecordable(request: Request, error: Exception) -> JSONResponse:
        """A value the request carries (its body, or its credential's label) that the
        platform event it would record refuses: the request's problem, not the server's,
        so a 422 naming each field rather than a 500."""
        if not isinstance(error, ValidationError):
            raise error
        errors = [
            FieldError(location=".".join(str(part) for part in item["loc"]), message=item["msg"])
            for item in error.errors()
        ]
        summary = "; ".join(f"{field.location}: {field.message}" for field in errors[:5])
        problem = unprocessable(f"the change cannot be recorded as asked: {summary}")
        return problem_response(request, problem, errors)

    async def on_invalid(request: Request, error: Exception) -> JSONResponse:
        if not isinstance(error, RequestValidationError):
            raise error
        errors = [
            FieldError(
                location=".".join(str(part) for part in item.get("loc", ())),
                message=str(item.get("msg", "invalid")),
            )
            for item in error.errors()
        ]
        summary = "; ".join(f"{field.location}: {field.message}" for field in errors[:5])
        return problem_response(request, unprocessable(summary or "invalid request"), errors)

    async def on_database_away(request: Request, error: Exception) -> JSONResponse:
        """The database went away mid-request (a failover, a restart): the request may
        succeed if retried, so a 503 that says so, never a 500."""
        problem = unavailable("the database is unavailable for a moment: retry the request")
        return problem_json(problem, {"Retry-After": "2"})

    app.add_exception_handler(Problem, on_problem)
    app.add_exception_handler(StoreUnavailableError, on_database_away)
    app.add_exception_handler(OperationalError, on_database_away)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(RequestValidationError, on_invalid)
    app.add_exception_handler(ValidationError, on_unrecordable)


_HTTP_PROBLEMS: Final = {
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
    408: ("request-timeout", "Request timeout"),
    413: ("content-too-large", "Content too large"),
}


def _http_problem(error: StarletteHTTPException) -> Problem:
    kind, title = _HTTP_PROBLEMS.get(error.status_code, ("http-error", "Error"))
    detail = str(error.detail) if error.detail else title
    if error.status_code == 404:
        detail = "no such resource: see /api/v1/docs"
    return Problem(error.status_code, kind, title, detail)
