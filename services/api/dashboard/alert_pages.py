"""An alert's own page (``/alerts/{id}``): what it says now, every step of its
history (raise, each needle-life rung climbed, acknowledgements, resolution) on the
platform's clock in the viewer's zone, the device's time beside it, and both moves
offered directly: a person may resolve an alert without acknowledging it first.
Registered on the dashboard's router when the package loads."""

from typing import Annotated, Final
from urllib.parse import quote

from fastapi import Form, Request
from fastapi.responses import RedirectResponse, Response

from services.api import commands
from services.api.access import Action
from services.api.dashboard.routes import Api, Viewer, _not_found, _page, _require, router
from services.api.deps import SameSiteForm
from services.api.queries import alerts as alert_queries

_MOVES: Final = {"acknowledge": "alert.acknowledged", "resolve": "alert.resolved"}


@router.get("/alerts/{alert_id}")
def alert_page(request: Request, who: Viewer, api: Api, alert_id: str) -> Response:
    _require(who, Action.READ_ALERTS)
    with api.engine.connect() as db:
        alert = alert_queries.alert_detail(db, who, alert_id)
    if alert is None:
        raise _not_found("alert")
    return _page(request, "alert.html", who, alert=alert)


@router.post("/alerts/{alert_id}/steps/{move}")
def move_alert_from_its_page(
    who: Viewer,
    same_site: SameSiteForm,
    api: Api,
    alert_id: str,
    move: str,
    note: Annotated[str, Form()] = "",
) -> Response:
    """Acknowledge or resolve, then back to the alert's page.  Resolving an open
    alert directly is allowed: what was done is in the note."""
    _require(who, Action.HANDLE_ALERTS)
    kind = _MOVES.get(move)
    with api.engine.connect() as db:
        alert = alert_queries.find_alert(db, who, alert_id)
    if kind is None or alert is None:
        raise _not_found("alert")
    with api.stores.borrow() as store:
        commands.move_alert(store, alert_id, alert.device_id, kind, note[:2000] or None, who.author)
    return RedirectResponse(f"/alerts/{quote(alert_id)}?moved={move}", status_code=303)
