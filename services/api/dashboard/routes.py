"""Dashboard pages: fleet, device, alerts, sessions, a session's audit.

Every page needs a signed-in person (``sign_in.py``) and checks them with the same
roles and scopes as the API; every form post carries the session's CSRF token.
"""

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Final
from urllib.parse import quote
from uuid import UUID

from fastapi import APIRouter, Depends, FastAPI, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from markupsafe import Markup
from sqlalchemy import Connection

from services.api import commands
from services.api.access import Action, Principal
from services.api.csv_export import csv_lines
from services.api.dashboard.charts import usage_bars
from services.api.deps import ApiContext, SameSiteForm, context, signed_in_person
from services.api.identity import load_identity
from services.api.identity.views import identity_out
from services.api.models import VerificationOut
from services.api.queries import alerts as alert_queries
from services.api.queries import devices as device_queries
from services.api.queries import sessions as session_queries
from services.api.queries.fleet import fleet_overview
from services.api.queries.verification import verify_session
from services.merkle_log import MerkleLog

_HERE: Final = Path(__file__).parent
_templates: Final = Jinja2Templates(directory=_HERE / "templates")
_PAGE: Final = 100


class LoginRequired(Exception):  # noqa: N818 - a redirect, not a failure
    pass


class PageRefused(Exception):  # noqa: N818 - rendered as a page, not a failure
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def viewer(request: Request, api: Annotated[ApiContext, Depends(context)]) -> Principal:
    found = signed_in_person(request, api)
    if found is None:
        raise LoginRequired
    return found


Viewer = Annotated[Principal, Depends(viewer)]
Api = Annotated[ApiContext, Depends(context)]
router = APIRouter(include_in_schema=False, default_response_class=HTMLResponse)


def _page(request: Request, template: str, who: Principal | None, **values: Any) -> Response:
    return _templates.TemplateResponse(
        request, template, {"who": who, "now": datetime.now(UTC), **values}
    )


def _require(who: Principal, action: Action) -> None:
    if not who.may(action):
        raise PageRefused(403, f"A {who.role.value} token may not see this page.")


@router.get("/")
def fleet_page(request: Request, who: Viewer, api: Api, status: str | None = None) -> Response:
    if not who.may(Action.READ_DEVICES):
        return RedirectResponse("/sessions", status_code=303)
    with api.engine.connect() as db:
        fleet = fleet_overview(db, who)
        devices = device_queries.list_devices(
            db, who, clinic_id=None, status=status, firmware=None, after=None, limit=_PAGE
        )
    return _page(request, "fleet.html", who, fleet=fleet, devices=devices, status=status)


@router.get("/devices/{device_id}")
def device_page(request: Request, who: Viewer, api: Api, device_id: str) -> Response:
    _require(who, Action.READ_DEVICES)
    with api.engine.connect() as db:
        device = device_queries.find_device(db, who, device_id)
        if device is None:
            raise _not_found("device")
        usage = device_queries.daily_usage(db, who, device_id, 30)
        query = session_queries.session_query(who, device_id=device_id)
        recent = session_queries.list_sessions(db, query, None, 10)[:10]
        # An auditor reads devices but not alerts: the page leaves them out.
        alerts = (
            alert_queries.list_alerts(
                db, who, status=None, severity=None, device_id=device_id, after=None, limit=10
            )[:10]
            if who.may(Action.READ_ALERTS)
            else None
        )
    with api.stores.borrow() as store:
        identity = identity_out(load_identity(store, device_id), datetime.now(UTC))
    chart = Markup(usage_bars(usage))  # noqa: S704 - built from numbers and escaped text
    return _page(
        request, "device.html", who, device=device, chart=chart, usage=usage, sessions=recent,
        alerts=alerts, identity=identity,
    )  # fmt: skip


@router.get("/alerts")
def alerts_page(request: Request, who: Viewer, api: Api, status: str | None = "open") -> Response:
    _require(who, Action.READ_ALERTS)
    shown = status if status in {"open", "acknowledged", "resolved"} else None
    with api.engine.connect() as db:
        alerts = alert_queries.list_alerts(
            db, who, status=shown, severity=None, device_id=None, after=None, limit=_PAGE
        )[:_PAGE]
    return _page(request, "alerts.html", who, alerts=alerts, status=shown)


@router.post("/alerts/{alert_id}/{move}")
def move_alert(
    who: Viewer,
    same_site: SameSiteForm,
    api: Api,
    alert_id: str,
    move: str,
    note: Annotated[str, Form()] = "",
    tab: Annotated[str, Form()] = "open",
) -> Response:
    _require(who, Action.HANDLE_ALERTS)
    kind = {"acknowledge": "alert.acknowledged", "resolve": "alert.resolved"}.get(move)
    with api.engine.connect() as db:
        alert = alert_queries.find_alert(db, who, alert_id)
    if kind is None or alert is None:
        raise _not_found("alert")
    with api.stores.borrow() as store:
        commands.move_alert(store, alert_id, alert.device_id, kind, note[:2000] or None, who.author)
    # Back to the tab the alert was handled on, where live refresh shows the change.
    back = tab if tab in {"open", "acknowledged", "resolved"} else "all"
    return RedirectResponse(f"/alerts?status={back}&moved={quote(alert_id)}", status_code=303)


@router.get("/sessions")
def sessions_page(
    request: Request, who: Viewer, api: Api, device_id: str | None = None
) -> Response:
    _require(who, Action.READ_SESSIONS)
    with api.engine.connect() as db:
        query = session_queries.session_query(who, device_id=device_id or None)
        rows = session_queries.list_sessions(db, query, None, _PAGE)[:_PAGE]
    return _page(request, "sessions.html", who, sessions=rows, device_id=device_id)


@router.get("/sessions.csv")
def sessions_csv(who: Viewer, api: Api, device_id: str | None = None) -> Response:
    _require(who, Action.AUDIT)
    query = session_queries.session_query(who, device_id=device_id or None)

    def rows() -> Iterator[str]:
        with api.engine.connect() as db:
            yield from csv_lines(session_queries.stream_export(db, query, 2000))

    return StreamingResponse(
        rows(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="coreline-sessions.csv"'},
    )


@router.get("/sessions/{session_id}")
def session_page(request: Request, who: Viewer, api: Api, session_id: str) -> Response:
    _require(who, Action.READ_SESSIONS)
    with api.engine.connect() as db:
        return _session_page(request, who, api, db, session_id, verification=None)


@router.post("/sessions/{session_id}/verify")
def reverify_session(
    request: Request, who: Viewer, same_site: SameSiteForm, api: Api, session_id: str
) -> Response:
    """Recomputes the session's chain from the stored bytes now, and shows the page
    with the verdict (as ``GET /api/v1/audit/verify?session_id=…`` answers it)."""
    _require(who, Action.AUDIT)
    with api.engine.connect() as db:
        found = session_queries.find_session(db, who, session_id)
        if found is None:
            raise _not_found("session")
        with api.stores.borrow() as store:
            verification = verify_session(db, store, who, found[0].device_id, UUID(session_id))
        return _session_page(request, who, api, db, session_id, verification)


def _session_page(
    request: Request,
    who: Principal,
    api: ApiContext,
    db: Connection,
    session_id: str,
    verification: VerificationOut | None,
) -> Response:
    found = session_queries.find_session(db, who, session_id)
    evidence = session_queries.session_evidence(db, who, session_id)
    if found is None or evidence is None:
        raise _not_found("session")
    session, audit = found
    span, facts = evidence
    # Whether a signed checkpoint commits to the session's last event (and so, through
    # the chain, to all of it): what a witness's copy of the log can be held to.
    logged = (
        None
        if span.last_seq is None
        else MerkleLog(api.engine).placement(span.stream_id, span.last_seq)
    )
    return _page(
        request, "session.html", who, session=session, audit=audit, span=span,
        evidence=facts, seals_kept=facts.sealed_through is not None, verification=verification,
        logged=logged,
    )  # fmt: skip


def _not_found(kind: str) -> PageRefused:
    return PageRefused(404, f"There is no such {kind}, or it is not yours to see.")


def install_dashboard(app: FastAPI, *, secure_cookies: bool) -> None:
    app.state.secure_cookies = secure_cookies

    async def to_login(request: Request, _: Exception) -> Response:
        return RedirectResponse(f"/login?next={quote(request.url.path)}", status_code=303)

    async def refused(request: Request, error: Exception) -> Response:
        status, message = (
            (error.status, error.message) if isinstance(error, PageRefused) else (500, "Error")
        )
        response = _page(request, "error.html", None, status=status, message=message)
        response.status_code = status
        return response

    app.add_exception_handler(LoginRequired, to_login)
    app.add_exception_handler(PageRefused, refused)
    app.mount("/static", StaticFiles(directory=_HERE / "static"), name="static")
    app.include_router(router)
