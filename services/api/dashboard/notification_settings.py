"""The "Notifications" page: a signed-in person chooses which alert severities they
get by e-mail (the same choice as ``/api/v1/me/notifications``).  Its router is
included by ``install_dashboard``."""

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from services.api.access import Action, PrincipalKind
from services.api.dashboard.routes import Api, PageRefused, Viewer, _page, _require
from services.api.deps import SameSiteForm
from services.delivery.email_log import SEVERITIES, email_severities, set_email_severities

router = APIRouter(include_in_schema=False, default_response_class=HTMLResponse)


@router.get("/notifications")
def notifications_page(request: Request, who: Viewer, api: Api) -> Response:
    _require(who, Action.READ_ALERTS)
    with api.engine.connect() as db:
        chosen = email_severities(db, who.subject_id)
    return _page(
        request, "notification_settings.html", who, severities=SEVERITIES, chosen=chosen,
        saved=request.query_params.get("saved") == "1",
    )  # fmt: skip


@router.post("/notifications")
def save_notifications(
    who: Viewer,
    same_site: SameSiteForm,
    api: Api,
    severity: Annotated[list[str] | None, Form()] = None,
) -> Response:
    _require(who, Action.READ_ALERTS)
    if who.kind is not PrincipalKind.USER:
        raise PageRefused(403, "Notification settings belong to a signed-in person.")
    try:
        set_email_severities(api.engine, who.subject_id, severity or [], datetime.now(UTC))
    except ValueError as error:
        raise PageRefused(422, str(error)) from None
    return RedirectResponse("/notifications?saved=1", status_code=303)
