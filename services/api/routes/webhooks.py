"""A clinic's webhooks: list, add, rotate a secret, switch off and on, delete.

Registration is refused (422) for a URL that leads where the egress policy forbids,
and (409) beyond the clinic's limit.  The rules come from ``CORELINE_EGRESS_ALLOW``
and ``CORELINE_WEBHOOK_LIMIT_PER_CLINIC``, read when the application starts (a bad
value stops it there) and kept on ``app.state.webhook_rules``.
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Path, Request, Response, status

from schemas.fields import CLINIC_ID_PATTERN
from services.api.access import Principal
from services.api.deps import ClinicConfigurer, Context, Store
from services.api.models import NewWebhook, WebhookChange, WebhookOut, WebhookSecret
from services.api.problems import (
    ERROR_RESPONSES,
    conflict,
    not_found,
    unavailable,
    unprocessable,
)
from services.api.webhook_changes import record_webhook_change, recorded_creation
from services.delivery import (
    InvalidWebhookError,
    Webhook,
    WebhookLimitError,
    WebhookNotFoundError,
    WebhookRules,
    create_webhook,
    delete_webhook,
    list_webhooks,
    load_webhook_settings,
    rotate_secret,
    set_webhook_active,
)


@asynccontextmanager
async def _rules_at_start(app: FastAPI) -> AsyncIterator[None]:
    _rules_of(app)
    yield


router = APIRouter(
    prefix="/clinics/{clinic_id}/webhooks",
    tags=["clinics"],
    responses=ERROR_RESPONSES,
    lifespan=_rules_at_start,
)
ClinicPath = Annotated[str, Path(pattern=CLINIC_ID_PATTERN, examples=["clinic-7"])]
WebhookPath = Annotated[str, Path(max_length=64)]


def _rules_of(app: FastAPI) -> WebhookRules:
    rules: WebhookRules | None = getattr(app.state, "webhook_rules", None)
    if rules is None:
        rules = load_webhook_settings().webhook_rules()
        app.state.webhook_rules = rules
    return rules


def webhook_rules(request: Request) -> WebhookRules:
    return _rules_of(request.app)


Rules = Annotated[WebhookRules, Depends(webhook_rules)]

_NEEDS_KEY: dict[int | str, dict[str, Any]] = {
    503: ERROR_RESPONSES[400] | {"description": "No webhook master key is configured"}
}
_LIMITED: dict[int | str, dict[str, Any]] = {
    409: ERROR_RESPONSES[400] | {"description": "The clinic has as many webhooks as it may"}
}


@router.get("", summary="A clinic's webhooks")
def get_webhooks(who: ClinicConfigurer, api: Context, clinic_id: ClinicPath) -> list[WebhookOut]:
    _in_scope(who, clinic_id)
    return [_out(hook) for hook in list_webhooks(api.engine, clinic_id)]


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Add a webhook",
    responses=_NEEDS_KEY | _LIMITED,
)
def add_webhook(
    who: ClinicConfigurer,
    api: Context,
    store: Store,
    rules: Rules,
    clinic_id: ClinicPath,
    body: NewWebhook,
) -> WebhookSecret:
    """Alert notices will be POSTed there, signed with the secret returned (once).
    The URL must lead to a public address (or one the operator allows)."""
    _in_scope(who, clinic_id)
    try:
        webhook_id, secret = create_webhook(
            api.engine, _master_key(api), clinic_id, body.url, rules
        )
    except InvalidWebhookError as error:
        raise unprocessable(str(error)) from None
    except WebhookLimitError as error:
        raise conflict(str(error)) from None
    recorded_creation(store, api.engine, clinic_id, webhook_id, body.url, who.author)
    return WebhookSecret(id=webhook_id, secret=secret)


@router.post("/{webhook_id}/rotate", summary="Rotate a webhook's secret", responses=_NEEDS_KEY)
def rotate_webhook(
    who: ClinicConfigurer,
    api: Context,
    store: Store,
    clinic_id: ClinicPath,
    webhook_id: WebhookPath,
) -> WebhookSecret:
    _in_scope(who, clinic_id)
    master_key = _master_key(api)
    _existing(api, clinic_id, webhook_id)
    record_webhook_change(store, clinic_id, webhook_id, "webhook.secret_rotated", who.author)
    try:
        secret = rotate_secret(api.engine, master_key, webhook_id, clinic_id)
    except WebhookNotFoundError:
        raise not_found("webhook") from None
    return WebhookSecret(id=webhook_id, secret=secret)


@router.patch("/{webhook_id}", summary="Switch a webhook off or on")
def change_webhook(
    who: ClinicConfigurer,
    api: Context,
    store: Store,
    clinic_id: ClinicPath,
    webhook_id: WebhookPath,
    body: WebhookChange,
) -> WebhookOut:
    """Switched off, a webhook gets no new notices; deliveries already pending wait,
    unsent, until it is switched on again."""
    _in_scope(who, clinic_id)
    if _existing(api, clinic_id, webhook_id).active != body.active:
        kind = "webhook.enabled" if body.active else "webhook.disabled"
        record_webhook_change(store, clinic_id, webhook_id, kind, who.author)
    try:
        hook = set_webhook_active(api.engine, webhook_id, active=body.active, clinic_id=clinic_id)
    except WebhookNotFoundError:
        raise not_found("webhook") from None
    return _out(hook)


@router.delete(
    "/{webhook_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    summary="Delete a webhook",
)
def remove_webhook(
    who: ClinicConfigurer,
    api: Context,
    store: Store,
    clinic_id: ClinicPath,
    webhook_id: WebhookPath,
) -> None:
    """It gets nothing more, and its pending deliveries are cancelled; its delivery
    log stays."""
    _in_scope(who, clinic_id)
    _existing(api, clinic_id, webhook_id)
    record_webhook_change(store, clinic_id, webhook_id, "webhook.deleted", who.author)
    try:
        delete_webhook(api.engine, webhook_id, clinic_id)
    except WebhookNotFoundError:
        raise not_found("webhook") from None


def _out(hook: Webhook) -> WebhookOut:
    return WebhookOut(
        id=hook.id, clinic_id=hook.clinic_id, url=hook.url,
        secret_version=hook.secret_version, created_at=hook.created_at, active=hook.active,
    )  # fmt: skip


def _existing(api: Context, clinic_id: str, webhook_id: str) -> Webhook:
    """The clinic's live webhook (404 otherwise), looked up before its change is
    recorded: nothing is recorded for a webhook that is not there."""
    for hook in list_webhooks(api.engine, clinic_id):
        if hook.id == webhook_id:
            return hook
    raise not_found("webhook")


def _in_scope(who: Principal, clinic_id: str) -> None:
    if not who.sees(clinic_id):
        raise not_found("clinic")


def _master_key(api: Context) -> bytes:
    if api.master_key is None:
        raise unavailable("webhooks need CORELINE_WEBHOOK_MASTER_KEY set where the API runs")
    return api.master_key
