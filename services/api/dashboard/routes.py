"""Dashboard pages: fleet, device, alerts, sessions, a session's audit.

Every page needs a signed-in person (``sign_in.py``) and checks them with the same
roles and scopes as the API; every form post carries the session's CSRF token.
"""

from collections.abc import Callable, Iterator, Sequence
from contextvars import ContextVar
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Annotated, Any, Final, TypeVar, get_args
from urllib.parse import quote, urlencode
from uuid import UUID
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, FastAPI, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from jinja2 import pass_context
from jinja2.runtime import Context
from markupsafe import Markup
from pydantic import BaseModel
from sqlalchemy import Connection

from schemas.platform_events import AlertRule
from services.alerts.policy import known_zone
from services.alerts.store import policy_overrides
from services.api import commands
from services.api.access import Action, Principal, Role
from services.api.csv_export import csv_lines
from services.api.dashboard import clock
from services.api.dashboard.charts import usage_bars
from services.api.deps import ApiContext, SameSiteForm, context, signed_in_person
from services.api.identity import load_identity
from services.api.identity.views import identity_out
from services.api.models import DeviceOut, DeviceStatus, VerificationOut
from services.api.pagination import decode_cursor, decode_time_cursor, next_cursor, time_key
from services.api.problems import Problem
from services.api.queries import alerts as alert_queries
from services.api.queries import devices as device_queries
from services.api.queries import sessions as session_queries
from services.api.queries.fleet import clinic_attention, fleet_overview
from services.api.queries.verification import verify_session
from services.merkle_log import MerkleLog

_HERE: Final = Path(__file__).parent
_templates: Final = Jinja2Templates(directory=_HERE / "templates")
_PAGE: Final = 100
_DEVICE_STATUSES: Final = get_args(DeviceStatus)
_ALERT_STATUSES: Final = ("open", "acknowledged", "resolved")
_SEVERITIES: Final = ("info", "warning", "critical")
_TRAIL_DEPTH: Final = 50
"""Pages a "previous" link can walk back (each a cursor carried in the URL)."""


@pass_context
def _local(values: Context, moment: datetime | None, received: datetime | None = None) -> Markup:
    # A macro imported without context cannot see the page's ``zone``: the page's
    # rendering sets it for the thread of the request too.
    zone = values.get("zone")
    shown = zone if isinstance(zone, ZoneInfo) else _PAGE_ZONE.get()
    return clock.local_time(moment, shown or ZoneInfo("UTC"), received)


_PAGE_ZONE: Final[ContextVar[ZoneInfo | None]] = ContextVar("page_zone", default=None)
_Key = TypeVar("_Key")
_templates.env.filters["local"] = _local
_templates.env.filters["ago"] = clock.ago
_templates.env.filters["duration"] = clock.duration


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
    zone = viewer_zone(request, who)
    _PAGE_ZONE.set(zone)
    return _templates.TemplateResponse(
        request, template, {"who": who, "now": datetime.now(UTC), "zone": zone, **values}
    )


def viewer_zone(request: Request, who: Principal | None) -> ZoneInfo:
    """The zone the viewer picked (a cookie), else their clinic's (its policy), else UTC."""
    clinic_zone = None
    if who is not None and who.clinic_id is not None:
        found = policy_overrides(context(request).engine, who.clinic_id).get("time_zone")
        clinic_zone = found if isinstance(found, str) else None
    return clock.chosen_zone(request.cookies.get(clock.ZONE_COOKIE), clinic_zone)


def never_connected(device: DeviceOut) -> bool:
    """Registered, perhaps assigned, but the device itself never spoke: its agent never
    started (which names the firmware) and the broker never saw it."""
    return device.online is None and device.firmware_version is None


_templates.env.globals["never_connected"] = never_connected


class Pager(BaseModel):
    """Links to the neighbouring pages of a cursor-paged list."""

    number: int
    previous: str | None
    next: str | None
    first: str | None


def _pager(request: Request, following: str | None) -> Pager:
    """``cursor`` is the page shown; ``trail`` the cursors of the pages before it ("-":
    the first), so "previous" needs no backward query."""
    params = {k: v for k, v in request.query_params.items() if k not in {"cursor", "trail"} and v}
    cursor = request.query_params.get("cursor") or None
    trail = [part for part in request.query_params.get("trail", "").split(".") if part]
    trail = trail[-_TRAIL_DEPTH:]

    def link(at: str | None, behind: Sequence[str]) -> str:
        query = {
            **params,
            **({"cursor": at} if at else {}),
            **({"trail": ".".join(behind)} if behind else {}),
        }
        return f"{request.url.path}?{urlencode(query)}" if query else request.url.path

    previous = None
    if cursor is not None:
        back = trail[-1] if trail else "-"
        previous = link(None if back == "-" else back, trail[:-1])
    forward = None if following is None else link(following, [*trail, cursor or "-"])
    first = link(None, []) if cursor is not None else None
    return Pager(
        number=len(trail) + 1 if cursor else 1, previous=previous, next=forward, first=first
    )


def _cursor_of(decode: Callable[[str | None], _Key], cursor: str | None) -> _Key:
    try:
        return decode(cursor)
    except Problem:
        raise PageRefused(
            400, "This page link is not one the dashboard made: start again from the list."
        ) from None


def _choice(value: str | None, allowed: Sequence[str]) -> str | None:
    return value if value in allowed else None


def _require(who: Principal, action: Action) -> None:
    if not who.may(action):
        raise PageRefused(403, f"A {who.role.value} token may not see this page.")


@router.get("/")
def home_page(request: Request, who: Viewer, api: Api) -> Response:
    """Where each role starts: an auditor at the sessions, a clinic at what needs it
    now, the manufacturer at the fleet."""
    if who.role is Role.AUDITOR or not who.may(Action.READ_DEVICES):
        return RedirectResponse("/sessions", status_code=303)
    with api.engine.connect() as db:
        fleet = fleet_overview(db, who)
        attention = clinic_attention(db, who) if who.clinic_id is not None else None
        listed = device_queries.list_devices(
            db, who, clinic_id=None, status=None, firmware=None, after=None, limit=_PAGE
        )
        devices = [DeviceOut(**item) for item in listed]
    following = next_cursor(devices, _PAGE, lambda row: [row.device_id])
    more = (
        None if following is None else f"/devices?{urlencode({'cursor': following, 'trail': '-'})}"
    )
    template = "home.html" if attention is not None else "fleet.html"
    return _page(
        request, template, who, fleet=fleet, attention=attention, devices=devices[:_PAGE],
        more=more,
    )  # fmt: skip


@router.get("/devices")
def devices_page(  # noqa: PLR0913, PLR0917 - one filter each
    request: Request,
    who: Viewer,
    api: Api,
    q: str = "",
    status: str | None = None,
    clinic_id: str = "",
    firmware: str = "",
    cursor: str | None = None,
) -> Response:
    _require(who, Action.READ_DEVICES)
    term, shown = _term(q, also="/"), _choice(status, _DEVICE_STATUSES)
    after = _cursor_of(lambda text: decode_cursor(text, (str,)), cursor or None)
    clinic = clinic_id.strip()[:64] or None if who.clinic_id is None else None
    with api.engine.connect() as db:
        listed = device_queries.list_devices(
            db, who, clinic_id=clinic, status=shown, firmware=firmware.strip()[:64] or None,
            after=None if after is None else after[0], limit=_PAGE, q=term,
        )  # fmt: skip
        rows = [DeviceOut(**item) for item in listed]
        clinics = fleet_overview(db, who).by_clinic if who.clinic_id is None else []
    pager = _pager(request, next_cursor(rows, _PAGE, lambda row: [row.device_id]))
    return _page(
        request, "devices.html", who, devices=rows[:_PAGE], pages=pager, q=term or "",
        status=shown, clinic_id=clinic or "", firmware=firmware.strip(), clinics=clinics,
        statuses=_DEVICE_STATUSES,
    )  # fmt: skip


def _term(q: str, also: str = "") -> str | None:
    """A search term as the API takes it: ids' characters only (and ``also``: a
    serial's "/"), at most 64."""
    allowed = "-_.:" + also
    kept = "".join(
        char for char in q.strip() if char.isascii() and (char.isalnum() or char in allowed)
    )
    return kept[:64] or None


@router.get("/devices/{device_id}")
def device_page(request: Request, who: Viewer, api: Api, device_id: str) -> Response:
    _require(who, Action.READ_DEVICES)
    with api.engine.connect() as db:
        device = device_queries.find_device(db, who, device_id)
        if device is None:
            raise _not_found("device")
        usage = device_queries.daily_usage(db, who, device_id, 30)
        occurred, received = device_queries.heard_at(db, who, device_id)
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
    # A device that never spoke has no usage to draw, only an empty frame that reads as idle.
    chart = None if never_connected(device) else Markup(usage_bars(usage))  # noqa: S704 - numbers and escaped text
    return _page(
        request, "device.html", who, device=device, chart=chart, usage=usage, sessions=recent,
        alerts=alerts, identity=identity, heard_occurred=occurred, heard_received=received,
    )  # fmt: skip


@router.get("/alerts")
def alerts_page(  # noqa: PLR0913, PLR0917 - one filter each
    request: Request,
    who: Viewer,
    api: Api,
    status: str | None = "open",
    severity: str | None = None,
    rule: str | None = None,
    device_id: str = "",
    q: str = "",
    cursor: str | None = None,
) -> Response:
    _require(who, Action.READ_ALERTS)
    shown = _choice(status, _ALERT_STATUSES)
    graded, named = _choice(severity, _SEVERITIES), _choice(rule, [r.value for r in AlertRule])
    device, term = _term(device_id.upper()), _term(q)
    after = _cursor_of(decode_time_cursor, cursor or None)
    with api.engine.connect() as db:
        rows = alert_queries.list_alerts(
            db, who, status=shown, severity=graded, device_id=device, after=after,
            limit=_PAGE, rule=named, q=term,
        )  # fmt: skip
    pager = _pager(
        request, next_cursor(rows, _PAGE, lambda row: time_key(row.raised_at, row.alert_id))
    )
    return _page(
        request, "alerts.html", who, alerts=rows[:_PAGE], status=shown, severity=graded,
        rule=named, device_id=device or "", q=term or "", pages=pager,
        severities=_SEVERITIES, rules=[r.value for r in AlertRule],
    )  # fmt: skip


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
def sessions_page(  # noqa: PLR0913, PLR0917 - one filter each
    request: Request,
    who: Viewer,
    api: Api,
    device_id: str = "",
    clinic_id: str = "",
    q: str = "",
    since: str = Query("", alias="from"),
    until: str = Query("", alias="to"),
    flagged: str = "",
    cursor: str | None = None,
) -> Response:
    """Sessions newest first; ``from`` and ``to`` are days in the viewer's zone, both
    included."""
    _require(who, Action.READ_SESSIONS)
    zone = viewer_zone(request, who)
    start, end = _day(since, zone), _day(until, zone)
    if start is not None and end is not None and end < start:
        start, end = end, start
    device, term = _term(device_id.upper()), _term(q)
    clinic = (clinic_id.strip()[:64] or None) if who.clinic_id is None else None
    only_flagged = flagged in {"1", "true", "on"}
    after = _cursor_of(decode_time_cursor, cursor or None)
    query = session_queries.session_query(
        who, device_id=device, clinic_id=clinic, q=term, flagged=only_flagged,
        started_from=None if start is None else _midnight(start, zone),
        started_to=None if end is None else _midnight(end + timedelta(days=1), zone),
    )  # fmt: skip
    with api.engine.connect() as db:
        rows = session_queries.list_sessions(db, query, after, _PAGE)
    pager = _pager(
        request, next_cursor(rows, _PAGE, lambda row: time_key(row.started_at, row.session_id))
    )
    csv_query = urlencode({"device_id": device} if device else {})
    return _page(
        request, "sessions.html", who, sessions=rows[:_PAGE], device_id=device or "",
        clinic_id=clinic or "", q=term or "", since=start, until=end, flagged=only_flagged,
        pages=pager, csv_query=csv_query,
    )  # fmt: skip


def _day(text: str, zone: ZoneInfo) -> date | None:
    try:
        return date.fromisoformat(text.strip()) if text.strip() else None
    except ValueError:
        raise PageRefused(400, f"{text[:20]!r} is not a date (YYYY-MM-DD).") from None


def _midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time.min, zone)


@router.get("/time-zone")
def zone_page(request: Request, who: Viewer, back: str = "/") -> Response:
    return _page(request, "time_zone.html", who, zones=clock.COMMON_ZONES, back=_local_path(back))


@router.post("/time-zone")
def choose_zone(
    who: Viewer,
    same_site: SameSiteForm,
    request: Request,
    zone: Annotated[str, Form(max_length=64)] = "",
    back: Annotated[str, Form(max_length=2000)] = "/",
) -> Response:
    """Keeps the viewer's zone in a cookie; an empty choice returns to the clinic's."""
    name = zone.strip()
    if name and not known_zone(name):
        raise PageRefused(400, f"{name[:64]!r} is not an IANA time zone (e.g. Europe/Berlin).")
    response = RedirectResponse(_local_path(back), status_code=303)
    if name:
        response.set_cookie(
            clock.ZONE_COOKIE, name, max_age=365 * 86400, httponly=True, samesite="lax",
            secure=bool(request.app.state.secure_cookies),
        )  # fmt: skip
    else:
        response.delete_cookie(clock.ZONE_COOKIE)
    return response


def _local_path(back: str) -> str:
    """Only a path of this site: never a redirect elsewhere."""
    return back if back.startswith("/") and not back.startswith("//") and "\\" not in back else "/"


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
    app.include_router(_management_router())
    app.include_router(_notification_router())


def _notification_router() -> APIRouter:
    # Imported here: the page imports this module's page helpers.
    from services.api.dashboard.notification_settings import router as notifications  # noqa: PLC0415

    return notifications


def _management_router() -> APIRouter:
    # Imported here: those screens import this module's page helpers.
    from services.api.dashboard.management_pages import management_router  # noqa: PLC0415

    return management_router
