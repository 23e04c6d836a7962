"""A clinic's webhook screens: list, add (the URL held to the egress policy, its
refusal shown at the field), rotate a secret (shown this once), switch off and on,
delete, and each webhook's delivery log.

The same changes as ``/api/v1/clinics/{id}/webhooks`` (``services.delivery`` under
the rules the API was started with, each recorded by ``webhook_changes`` with the
signed-in person as author), in the same order: a change is recorded, then applied;
a webhook is written, then its creation recorded.
"""

from typing import Annotated, Final
from urllib.parse import quote

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from services.api.access import Action, Principal
from services.api.dashboard.management_policies import clinic_in_scope
from services.api.dashboard.routes import Api, PageRefused, Viewer, _page, _require
from services.api.deps import SameSiteForm
from services.api.problems import Problem
from services.api.routes.webhooks import Rules
from services.api.webhook_changes import record_webhook_change, recorded_creation
from services.delivery import (
    InvalidWebhookError,
    Webhook,
    WebhookLimitError,
    WebhookNotFoundError,
    create_webhook,
    delete_webhook,
    delivery_log,
    list_webhooks,
    rotate_secret,
    set_webhook_active,
)

router = APIRouter(include_in_schema=False, default_response_class=HTMLResponse)

_DONE: Final = {
    "disabled": "Webhook switched off: it gets no new notices until switched on.",
    "enabled": "Webhook switched on: pending notices go out again.",
    "deleted": "Webhook deleted: it gets nothing more; its delivery log stays.",
    "unchanged": "The webhook is so already: nothing recorded.",
}
_SHOWN: Final = 100
_NO_KEY: Final = "Webhooks need CORELINE_WEBHOOK_MASTER_KEY set where the API runs."


@router.get("/manage/webhooks")
def webhooks_index(who: Viewer, clinic_id: str = "") -> Response:
    """A clinic's staff go to their clinic's webhooks; the manufacturer names a clinic
    (the clinic policy page lists them)."""
    _require(who, Action.CONFIGURE_CLINIC)
    if not clinic_id and who.clinic_id is None:
        return RedirectResponse("/manage/policy", status_code=303)
    chosen = clinic_in_scope(who, clinic_id or who.clinic_id or "")
    return RedirectResponse(f"/manage/clinics/{quote(chosen)}/webhooks", status_code=303)


@router.get("/manage/clinics/{clinic_id}/webhooks")
def webhooks_page(
    request: Request, who: Viewer, api: Api, clinic_id: str, done: str | None = None
) -> Response:
    _require(who, Action.CONFIGURE_CLINIC)
    chosen = clinic_in_scope(who, clinic_id)
    return _webhooks_page(request, who, api, chosen, done=_DONE.get(done or ""))


@router.post("/manage/clinics/{clinic_id}/webhooks")
def add_webhook(
    request: Request,
    who: Viewer,
    same_site: SameSiteForm,
    api: Api,
    rules: Rules,
    clinic_id: str,
    url: Annotated[str, Form()] = "",
) -> Response:
    _require(who, Action.CONFIGURE_CLINIC)
    chosen = clinic_in_scope(who, clinic_id)
    typed = url.strip()
    if api.master_key is None:
        return _webhooks_page(request, who, api, chosen, problem=_NO_KEY, status=503)
    try:
        webhook_id, secret = create_webhook(api.engine, api.master_key, chosen, typed, rules)
    except InvalidWebhookError as error:
        return _webhooks_page(request, who, api, chosen, url=typed, url_error=str(error),
                              status=422)  # fmt: skip
    except WebhookLimitError as error:
        return _webhooks_page(request, who, api, chosen, url=typed, url_error=str(error),
                              status=409)  # fmt: skip
    try:
        with api.stores.borrow() as store:
            recorded_creation(store, api.engine, chosen, webhook_id, typed, who.author)
    except Problem as problem:  # deleted again: its secret reached no one
        return _webhooks_page(request, who, api, chosen, problem=problem.detail,
                              status=problem.status)  # fmt: skip
    shown = {"webhook_id": webhook_id, "secret": secret, "what": "added"}
    return _webhooks_page(request, who, api, chosen, secret=shown, status=201)


@router.post("/manage/clinics/{clinic_id}/webhooks/{webhook_id}/rotate")
def rotate_webhook_secret(
    request: Request, who: Viewer, same_site: SameSiteForm, api: Api, clinic_id: str,
    webhook_id: str,
) -> Response:  # fmt: skip
    _require(who, Action.CONFIGURE_CLINIC)
    chosen = clinic_in_scope(who, clinic_id)
    if api.master_key is None:
        return _webhooks_page(request, who, api, chosen, problem=_NO_KEY, status=503)
    _existing(api, chosen, webhook_id)
    with api.stores.borrow() as store:
        record_webhook_change(store, chosen, webhook_id, "webhook.secret_rotated", who.author)
    try:
        secret = rotate_secret(api.engine, api.master_key, webhook_id, chosen)
    except WebhookNotFoundError:
        raise _no_webhook() from None
    shown = {"webhook_id": webhook_id, "secret": secret, "what": "rotated"}
    return _webhooks_page(request, who, api, chosen, secret=shown)


@router.post("/manage/clinics/{clinic_id}/webhooks/{webhook_id}/active")
def switch_webhook(
    who: Viewer,
    same_site: SameSiteForm,
    api: Api,
    clinic_id: str,
    webhook_id: str,
    active: Annotated[str, Form()] = "",
) -> Response:
    _require(who, Action.CONFIGURE_CLINIC)
    chosen = clinic_in_scope(who, clinic_id)
    wanted = active == "on"
    done = "unchanged"
    if _existing(api, chosen, webhook_id).active != wanted:
        kind = "webhook.enabled" if wanted else "webhook.disabled"
        with api.stores.borrow() as store:
            record_webhook_change(store, chosen, webhook_id, kind, who.author)
        done = kind.removeprefix("webhook.")
    try:
        set_webhook_active(api.engine, webhook_id, active=wanted, clinic_id=chosen)
    except WebhookNotFoundError:
        raise _no_webhook() from None
    return RedirectResponse(f"/manage/clinics/{quote(chosen)}/webhooks?done={done}", 303)


@router.post("/manage/clinics/{clinic_id}/webhooks/{webhook_id}/delete")
def remove_webhook(
    who: Viewer, same_site: SameSiteForm, api: Api, clinic_id: str, webhook_id: str
) -> Response:
    _require(who, Action.CONFIGURE_CLINIC)
    chosen = clinic_in_scope(who, clinic_id)
    _existing(api, chosen, webhook_id)
    with api.stores.borrow() as store:
        record_webhook_change(store, chosen, webhook_id, "webhook.deleted", who.author)
    try:
        delete_webhook(api.engine, webhook_id, chosen)
    except WebhookNotFoundError:
        raise _no_webhook() from None
    return RedirectResponse(f"/manage/clinics/{quote(chosen)}/webhooks?done=deleted", 303)


@router.get("/manage/clinics/{clinic_id}/webhooks/{webhook_id}")
def deliveries_page(
    request: Request, who: Viewer, api: Api, clinic_id: str, webhook_id: str
) -> Response:
    """The webhook's deliveries, newest first: each notice's state, attempts, the
    receiver's last answer and when the next attempt is due."""
    _require(who, Action.CONFIGURE_CLINIC)
    chosen = clinic_in_scope(who, clinic_id)
    hook = _existing(api, chosen, webhook_id)
    deliveries = delivery_log(api.engine, webhook_id=hook.id, limit=_SHOWN)
    return _page(
        request, "manage_webhook_deliveries.html", who, clinic_id=chosen, hook=hook,
        deliveries=deliveries,
    )  # fmt: skip


def _existing(api: Api, clinic_id: str, webhook_id: str) -> Webhook:
    """The clinic's live webhook (404 otherwise), looked up before its change is
    recorded: nothing is recorded for a webhook that is not there."""
    for hook in list_webhooks(api.engine, clinic_id):
        if hook.id == webhook_id:
            return hook
    raise _no_webhook()


def _no_webhook() -> PageRefused:
    return PageRefused(404, "There is no such webhook, or it is not yours to see.")


def _webhooks_page(  # noqa: PLR0913 - the page's parts
    request: Request,
    who: Principal,
    api: Api,
    clinic_id: str,
    *,
    done: str | None = None,
    problem: str | None = None,
    url: str = "",
    url_error: str | None = None,
    secret: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    hooks = list_webhooks(api.engine, clinic_id)
    response = _page(
        request, "manage_webhooks.html", who, clinic_id=clinic_id, hooks=hooks, done=done,
        problem=problem, url=url, url_error=url_error, secret=secret,
    )  # fmt: skip
    response.status_code = status
    # A page that shows a secret is kept by no cache.
    if secret is not None:
        response.headers["Cache-Control"] = "no-store"
    return response
