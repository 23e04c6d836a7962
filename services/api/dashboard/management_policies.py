"""A clinic's policy screen: its alert thresholds and time zone, and the handpiece
settings of its layer of desired configuration (what a handpiece does with a spent
cartridge or an overdue service), each field shown beside the manufacturer's bounds
on it (the bounds themselves: ``management_bounds``).

The same changes as ``PUT /api/v1/clinics/{id}/policy`` and ``PUT …/clinics/{id}/config``
(``change_policy``, ``change_layer``), recorded as the same events with the signed-in
person as author.  A value out of bounds is a 422 with the message at its field, and
nothing is recorded: every field is checked before any is recorded.
"""

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Final
from urllib.parse import quote

import orjson
from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from schemas import describe
from schemas.config_events import (
    MODE_FIELDS,
    NUMERIC_FIELDS,
    ClinicBounds,
    ConfigLayer,
    LayerSettings,
)
from schemas.device_config import InterlockMode
from services.alerts import store as alert_store
from services.alerts.policy import DEFAULT_ALERT_POLICY, AlertPolicy, PolicyError
from services.alerts.policy_bounds import (
    POLICY_KEYS,
    Bound,
    check_overrides,
)
from services.api.access import Action, Principal
from services.api.config_changes import change_layer, recorded_layer
from services.api.config_changes import recorded_bounds as layer_bounds
from services.api.dashboard import form_fields
from services.api.dashboard.clock import COMMON_ZONES
from services.api.dashboard.form_fields import FormInputError
from services.api.dashboard.routes import Api, PageRefused, Viewer, _page, _require
from services.api.deps import SameSiteForm
from services.api.policy_changes import change_policy, current_bounds
from services.api.problems import Problem
from services.config_delivery import clinic_layer_problems

router = APIRouter(include_in_schema=False, default_response_class=HTMLResponse)

_DONE: Final = {
    "alerts": "Alert thresholds recorded: the alert engine decides by them from now on.",
    "devices": "Device settings recorded: the clinic's handpieces get them within seconds.",
    "unchanged": "The settings are so already: nothing recorded.",
}
_ZONE: Final = "time_zone"
"""The one override that is a name (IANA), not a number: it has no bounds."""
_INTEGER_KEYS: Final = frozenset(
    key for key, field in AlertPolicy.model_fields.items() if field.annotation is int
)

_LAYER_FIELDS: Final[tuple[str, ...]] = (*NUMERIC_FIELDS, *MODE_FIELDS)
"""What a clinic's layer may set, as the form shows it (recalled lots aside)."""


async def _form_values(request: Request) -> dict[str, str]:
    """The posted fields by name (a form whose fields follow the policy's keys)."""
    form = await request.form()
    return {name: value for name, value in form.items() if isinstance(value, str)}


FormValues = Annotated[dict[str, str], Depends(_form_values)]


@dataclass(frozen=True, slots=True)
class FieldProblems:
    """What was typed, and the message for each field that cannot be taken as typed."""

    typed: Mapping[str, str]
    errors: Mapping[str, str]


def clinic_in_scope(who: Principal, clinic_id: str) -> str:
    """The clinic, if the principal sees it; a 404 like the API's otherwise (a clinic
    may not even learn which clinic ids exist)."""
    try:
        named = form_fields.clinic_id(clinic_id)
    except FormInputError:
        named = None
    if named is None or not who.sees(named):
        raise PageRefused(404, "There is no such clinic, or it is not yours to see.")
    return named


def may_see_policies(who: Principal) -> None:
    if not (who.may(Action.CONFIGURE_CLINIC) or who.may(Action.SET_POLICY_BOUNDS)):
        raise PageRefused(403, f"A {who.role.value} may not see clinic policies.")


@router.get("/manage/clinics/{clinic_id}/policy")
def clinic_policy_page(
    request: Request, who: Viewer, api: Api, clinic_id: str, done: str | None = None
) -> Response:
    _require(who, Action.CONFIGURE_CLINIC)
    chosen = clinic_in_scope(who, clinic_id)
    return _clinic_page(request, who, api, chosen, done=_DONE.get(done or ""))


@router.post("/manage/clinics/{clinic_id}/policy/alerts")
def set_alert_thresholds(
    request: Request,
    who: Viewer,
    same_site: SameSiteForm,
    api: Api,
    clinic_id: str,
    form: FormValues,
) -> Response:
    _require(who, Action.CONFIGURE_CLINIC)
    chosen = clinic_in_scope(who, clinic_id)
    recorded = None
    with api.stores.borrow() as store:
        overrides, errors = _overrides_from(form, current_bounds(store))
        if not errors:
            try:
                recorded = change_policy(store, api.engine, chosen, overrides, who.author)
            except PolicyError as error:  # the bounds changed since they were read
                errors = {"": str(error)}
    if errors:
        problems = FieldProblems(form, errors)
        return _clinic_page(request, who, api, chosen, alert_problems=problems, status=422)
    done = "alerts" if recorded is not None else "unchanged"
    return RedirectResponse(f"/manage/clinics/{quote(chosen)}/policy?done={done}", 303)


@router.post("/manage/clinics/{clinic_id}/policy/devices")
def set_device_settings(
    request: Request,
    who: Viewer,
    same_site: SameSiteForm,
    api: Api,
    clinic_id: str,
    form: FormValues,
) -> Response:
    _require(who, Action.CONFIGURE_CLINIC)
    chosen = clinic_in_scope(who, clinic_id)
    with api.stores.borrow() as store:
        kept = recorded_layer(store, ConfigLayer.CLINIC, chosen)[0]
        settings, errors = _layer_from(form, kept, layer_bounds(store)[0])
        recorded = None
        if settings is not None and not errors:
            try:
                recorded = change_layer(store, ConfigLayer.CLINIC, chosen, settings, who.author)
            except Problem as problem:  # the bounds changed since they were read
                errors = _layer_errors(problem.detail)
    if errors:
        problems = FieldProblems(form, errors)
        return _clinic_page(request, who, api, chosen, device_problems=problems, status=422)
    done = "devices" if recorded is not None else "unchanged"
    return RedirectResponse(f"/manage/clinics/{quote(chosen)}/policy?done={done}", 303)


def _overrides_from(
    form: Mapping[str, str], bounds: Mapping[str, Bound]
) -> tuple[dict[str, float | str], dict[str, str]]:
    """The overrides typed (an empty field: the default holds), and per field why it
    cannot be taken: not a number, not a value the policy takes, or out of bounds."""
    overrides: dict[str, float | str] = {}
    errors: dict[str, str] = {}
    zone = form.get(_ZONE, "").strip()
    if zone:
        try:
            AlertPolicy.with_overrides({_ZONE: zone})
        except PolicyError as error:
            errors[_ZONE] = f"{_ZONE}: {error}" if _ZONE not in str(error) else str(error)
        else:
            overrides[_ZONE] = zone
    for key in POLICY_KEYS:
        text = form.get(key, "").strip()
        if not text:
            continue
        try:
            value = _number(text, key)
            check_overrides({key: value}, bounds)
        except (FormInputError, PolicyError) as error:
            errors[key] = str(error)
            continue
        overrides[key] = value
    return overrides, errors


def _layer_from(
    form: Mapping[str, str], kept: LayerSettings, bounds: ClinicBounds
) -> tuple[LayerSettings | None, dict[str, str]]:
    """The clinic's layer with the fields of the form as typed (empty: not set by the
    clinic) and what the form does not show (recalled lots) as recorded."""
    named: dict[str, Any] = {
        name: value for name, value in kept.named().items()
        if name not in _LAYER_FIELDS
    }  # fmt: skip
    errors: dict[str, str] = {}
    for name in _LAYER_FIELDS:
        text = form.get(name, "").strip()
        if not text:
            continue
        try:
            typed: int | str = (
                form_fields.whole_number(text, name, 0, 86_400) if name in NUMERIC_FIELDS else text
            )
            LayerSettings.model_validate({name: typed})
        except FormInputError as error:
            errors[name] = str(error)
        except ValidationError as error:
            errors[name] = f"{name}: {describe(error)}"
        else:
            named[name] = typed
    if errors:
        return None, errors
    settings = LayerSettings.model_validate(named)
    return settings, _layer_errors("; ".join(clinic_layer_problems(settings, bounds)))


def _layer_errors(detail: str) -> dict[str, str]:
    """``clinic_layer_problems`` lines, each by the field it names first."""
    errors: dict[str, str] = {}
    for line in filter(None, detail.split("; ")):
        field = line.split(" ", 1)[0]
        key = field if field in _LAYER_FIELDS else ""
        errors[key] = f"{errors[key]}; {line}" if key in errors else line
    return errors


def _number(text: str, key: str) -> float:
    try:
        value = float(text.replace(",", ""))
    except ValueError:
        raise FormInputError(f"{key}: a number, not {text!r}.") from None
    if not math.isfinite(value):
        raise FormInputError(f"{key}: a finite number, not {text!r}.")
    if key in _INTEGER_KEYS and not value.is_integer():
        raise FormInputError(f"{key}: a whole number, not {text!r}.")
    return value


def _clinic_page(  # noqa: PLR0913 - the page's parts
    request: Request,
    who: Principal,
    api: Api,
    clinic_id: str,
    *,
    done: str | None = None,
    alert_problems: FieldProblems | None = None,
    device_problems: FieldProblems | None = None,
    status: int = 200,
) -> Response:
    overrides = alert_store.policy_overrides(api.engine, clinic_id)
    with api.stores.borrow() as store:
        bounds = current_bounds(store)
        layer, layer_event, _ = recorded_layer(store, ConfigLayer.CLINIC, clinic_id)
        device_bounds = layer_bounds(store)[0]
    effective = AlertPolicy.with_overrides(overrides)
    thresholds = [
        {
            "key": key,
            "default": shown_value(getattr(DEFAULT_ALERT_POLICY, key)),
            "effective": shown_value(getattr(effective, key)),
            "value": typed_value(alert_problems, key, overrides.get(key)),
            "bound": bounds[key].text() if key in bounds else "any value",
            "min": bounds[key].low if key in bounds else None,
            "max": bounds[key].high if key in bounds else None,
            "error": alert_problems.errors.get(key) if alert_problems else None,
        }
        for key in POLICY_KEYS
    ]
    set_now = layer.named()
    numeric = [
        {
            "key": name,
            "value": typed_value(device_problems, name, set_now.get(name)),
            "bound": device_bounds.numeric.get(name),
            "error": device_problems.errors.get(name) if device_problems else None,
        }
        for name in NUMERIC_FIELDS
    ]
    modes = [
        {
            "key": name,
            "value": typed_value(device_problems, name, set_now.get(name)),
            "allowed": [mode.value for mode in device_bounds.modes.get(name, ())],
            "error": device_problems.errors.get(name) if device_problems else None,
        }
        for name in MODE_FIELDS
    ]
    response = _page(
        request, "manage_policy.html", who, clinic_id=clinic_id, done=done,
        thresholds=thresholds, numeric=numeric, modes=modes,
        all_modes=[mode.value for mode in InterlockMode],
        alert_problem=alert_problems.errors.get("") if alert_problems else None,
        zone={
            "value": typed_value(alert_problems, _ZONE, overrides.get(_ZONE)),
            "default": DEFAULT_ALERT_POLICY.time_zone,
            "effective": effective.time_zone,
            "error": alert_problems.errors.get(_ZONE) if alert_problems else None,
        },
        zones=COMMON_ZONES,
        device_problem=device_problems.errors.get("") if device_problems else None,
        recalled_lots=set_now.get("recalled_lots") or [],
        layer_by=_author(layer_event.body if layer_event else None),
    )  # fmt: skip
    response.status_code = status
    return response


def typed_value(problems: FieldProblems | None, name: str, recorded: Any) -> str:
    """What the field shows: what was typed if the form came back, else the record."""
    if problems is not None:
        return problems.typed.get(name, "")
    return "" if recorded is None else shown_value(recorded)


def shown_value(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _author(body: bytes | None) -> str | None:
    if body is None:
        return None
    by: str | None = orjson.loads(body)["data"].get("by")
    return by
