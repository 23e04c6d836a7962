"""A clinic's alert policy and webhooks."""

from typing import Annotated, Any

from fastapi import APIRouter, Path, status

from schemas.fields import CLINIC_ID_PATTERN
from services.alerts import store as alert_store
from services.alerts.policy import AlertPolicy, PolicyError
from services.api.access import Principal
from services.api.deps import ClinicConfigurer, Context
from services.api.models import NewWebhook, PolicyOut, WebhookOut, WebhookSecret
from services.api.problems import ERROR_RESPONSES, not_found, unavailable, unprocessable
from services.delivery import (
    InvalidWebhookError,
    WebhookNotFoundError,
    create_webhook,
    list_webhooks,
    rotate_secret,
)

router = APIRouter(prefix="/clinics/{clinic_id}", tags=["clinics"], responses=ERROR_RESPONSES)
ClinicPath = Annotated[str, Path(pattern=CLINIC_ID_PATTERN, examples=["clinic-7"])]


@router.get("/policy", summary="A clinic's alert policy")
def get_policy(who: ClinicConfigurer, api: Context, clinic_id: ClinicPath) -> PolicyOut:
    _in_scope(who, clinic_id)
    overrides = alert_store.policy_overrides(api.engine, clinic_id)
    return _policy(clinic_id, overrides)


@router.put("/policy", summary="Set a clinic's alert policy")
def set_policy(
    who: ClinicConfigurer, api: Context, clinic_id: ClinicPath, overrides: dict[str, float]
) -> PolicyOut:
    """Overrides of DESIGN §7's defaults, e.g. ``{"coverage_max_pct": 6}``; ``{}``
    restores the defaults.  Applies to what the engine decides from now on."""
    _in_scope(who, clinic_id)
    try:
        alert_store.set_policy(api.engine, clinic_id, overrides)
    except PolicyError as error:
        raise unprocessable(str(error)) from None
    return _policy(clinic_id, overrides)


@router.get("/webhooks", summary="A clinic's webhooks")
def get_webhooks(who: ClinicConfigurer, api: Context, clinic_id: ClinicPath) -> list[WebhookOut]:
    _in_scope(who, clinic_id)
    return [
        WebhookOut(
            id=hook.id, clinic_id=hook.clinic_id, url=hook.url,
            secret_version=hook.secret_version, created_at=hook.created_at, active=hook.active,
        )
        for hook in list_webhooks(api.engine, clinic_id)
    ]  # fmt: skip


_NEEDS_KEY: dict[int | str, dict[str, Any]] = {
    503: ERROR_RESPONSES[400] | {"description": "No webhook master key is configured"}
}


@router.post(
    "/webhooks", status_code=status.HTTP_201_CREATED, summary="Add a webhook", responses=_NEEDS_KEY
)
def add_webhook(
    who: ClinicConfigurer, api: Context, clinic_id: ClinicPath, body: NewWebhook
) -> WebhookSecret:
    """Alert notices will be POSTed there, signed with the secret returned (once)."""
    _in_scope(who, clinic_id)
    try:
        webhook_id, secret = create_webhook(api.engine, _master_key(api), clinic_id, body.url)
    except InvalidWebhookError as error:
        raise unprocessable(str(error)) from None
    return WebhookSecret(id=webhook_id, secret=secret)


@router.post(
    "/webhooks/{webhook_id}/rotate", summary="Rotate a webhook's secret", responses=_NEEDS_KEY
)
def rotate_webhook(
    who: ClinicConfigurer,
    api: Context,
    clinic_id: ClinicPath,
    webhook_id: Annotated[str, Path(max_length=64)],
) -> WebhookSecret:
    _in_scope(who, clinic_id)
    if not any(hook.id == webhook_id for hook in list_webhooks(api.engine, clinic_id)):
        raise not_found("webhook")
    try:
        secret = rotate_secret(api.engine, _master_key(api), webhook_id)
    except WebhookNotFoundError:
        raise not_found("webhook") from None
    return WebhookSecret(id=webhook_id, secret=secret)


def _in_scope(who: Principal, clinic_id: str) -> None:
    if not who.sees(clinic_id):
        raise not_found("clinic")


def _master_key(api: Context) -> bytes:
    if api.master_key is None:
        raise unavailable("webhooks need CORELINE_WEBHOOK_MASTER_KEY set where the API runs")
    return api.master_key


def _policy(clinic_id: str, overrides: dict[str, Any]) -> PolicyOut:
    effective = AlertPolicy.with_overrides(overrides).model_dump()
    return PolicyOut(clinic_id=clinic_id, overrides=overrides, effective=effective)
