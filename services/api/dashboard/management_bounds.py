"""The manufacturer's bounds on what clinics may set, and the way to each clinic's
policy: the bounds on alert thresholds (``PUT /api/v1/policy-bounds``,
``policy_changes.change_bounds``) and on the clinic layer of handpiece settings
(``PUT /api/v1/config/clinic-bounds``, ``config_changes.change_bounds``), recorded as
the same events with the signed-in person as author.  Bounds that cannot hold are a
422 with the message at their field, and nothing is recorded."""

import math
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from schemas import describe
from schemas.config_events import MODE_FIELDS, NUMERIC_FIELDS, ClinicBounds, NumericBound
from schemas.device_config import InterlockMode
from services.alerts.policy import DEFAULT_ALERT_POLICY
from services.alerts.policy_bounds import DEFAULT_BOUNDS, POLICY_KEYS, Bound, BoundsError
from services.alerts.policy_bounds import check_bounds as check_policy_bounds
from services.api import config_changes, policy_changes
from services.api.access import Action, Principal
from services.api.dashboard.form_fields import FormInputError
from services.api.dashboard.management_policies import (
    FieldProblems,
    FormValues,
    clinic_in_scope,
    may_see_policies,
    shown_value,
    typed_value,
)
from services.api.dashboard.routes import Api, Viewer, _page, _require
from services.api.deps import SameSiteForm
from services.api.queries.registry import known_clinics

router = APIRouter(include_in_schema=False, default_response_class=HTMLResponse)

_DONE: Final = {
    "bounds": "Bounds on alert thresholds recorded: in force at once for every clinic's next "
    "change.",
    "device-bounds": "Bounds on handpiece settings recorded: clinic layers are held to them "
    "at the next merge.",
    "unchanged": "The bounds are so already: nothing recorded.",
}


@router.get("/manage/policy")
def policy_index(
    request: Request, who: Viewer, api: Api, clinic_id: str = "", done: str | None = None
) -> Response:
    """A clinic's staff go straight to their clinic's page; the manufacturer picks a
    clinic and sets the bounds."""
    may_see_policies(who)
    if clinic_id or who.clinic_id is not None:
        chosen = clinic_in_scope(who, clinic_id or who.clinic_id or "")
        return RedirectResponse(f"/manage/clinics/{quote(chosen)}/policy", status_code=303)
    return _bounds_page(request, who, api, done=_DONE.get(done or ""))


@router.post("/manage/policy-bounds")
def set_policy_bounds(
    request: Request, who: Viewer, same_site: SameSiteForm, api: Api, form: FormValues
) -> Response:
    _require(who, Action.SET_POLICY_BOUNDS)
    wanted, errors = _policy_bounds_from(form)
    if errors:
        problems = FieldProblems(form, errors)
        return _bounds_page(request, who, api, policy_problems=problems, status=422)
    with api.stores.borrow() as store:
        policy_changes.change_bounds(store, wanted, who.author)
    return RedirectResponse("/manage/policy?done=bounds", status_code=303)


@router.post("/manage/device-bounds")
def set_device_bounds(
    request: Request, who: Viewer, same_site: SameSiteForm, api: Api, form: FormValues
) -> Response:
    _require(who, Action.CONFIGURE_DEVICES)
    wanted, errors = _device_bounds_from(form)
    if wanted is None or errors:
        problems = FieldProblems(form, errors)
        return _bounds_page(request, who, api, device_problems=problems, status=422)
    with api.stores.borrow() as store:
        recorded = config_changes.change_bounds(store, wanted, who.author)
    done = "device-bounds" if recorded is not None else "unchanged"
    return RedirectResponse(f"/manage/policy?done={done}", status_code=303)


def _policy_bounds_from(form: Mapping[str, str]) -> tuple[dict[str, Bound], dict[str, str]]:
    """The bounds typed, only where they differ from the platform's defaults (so a
    default changed later still holds where the manufacturer never chose otherwise)."""
    wanted: dict[str, Bound] = {}
    errors: dict[str, str] = {}
    for key in POLICY_KEYS:
        try:
            low = _optional_number(form.get(f"{key}.min", ""), f"{key} min")
            high = _optional_number(form.get(f"{key}.max", ""), f"{key} max")
            bound = Bound(low, high)
            check_policy_bounds({key: bound})
        except (FormInputError, BoundsError) as error:
            errors[key] = str(error)
            continue
        if bound != DEFAULT_BOUNDS[key]:
            wanted[key] = bound
    return wanted, errors


def _device_bounds_from(form: Mapping[str, str]) -> tuple[ClinicBounds | None, dict[str, str]]:
    """Per numeric setting its range (both ends empty: not a clinic's to set), per
    mode the choices ticked (none: not a clinic's to set)."""
    numeric: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for name in NUMERIC_FIELDS:
        low, high = form.get(f"{name}.min", "").strip(), form.get(f"{name}.max", "").strip()
        if not low and not high:
            continue
        try:
            numeric[name] = NumericBound(
                min=_whole(low, name, "min"), max=_whole(high, name, "max")
            )
        except FormInputError as error:
            errors[name] = str(error)
        except ValidationError as error:
            errors[name] = f"{name}: {describe(error)}"
    modes = {
        name: tuple(mode for mode in InterlockMode if form.get(f"{name}.{mode.value}") == "yes")
        for name in MODE_FIELDS
    }
    if errors:
        return None, errors
    chosen = {name: allowed for name, allowed in modes.items() if allowed}
    return ClinicBounds.model_validate({"numeric": numeric, "modes": chosen}), {}


def _whole(text: str, name: str, end: str) -> int:
    if not text:
        raise FormInputError(f"{name}: give both ends, or neither (not a clinic's to set).")
    try:
        return int(text.replace(",", ""))
    except ValueError:
        raise FormInputError(f"{name} {end}: a whole number, not {text!r}.") from None


def _optional_number(text: str, what: str) -> float | None:
    typed = text.strip()
    if not typed:
        return None
    try:
        value = float(typed.replace(",", ""))
    except ValueError:
        raise FormInputError(f"{what}: a number or empty (no limit), not {typed!r}.") from None
    if not math.isfinite(value):
        raise FormInputError(f"{what}: a finite number or empty (no limit).")
    return value


def _bounds_page(
    request: Request,
    who: Principal,
    api: Api,
    *,
    done: str | None = None,
    policy_problems: FieldProblems | None = None,
    device_problems: FieldProblems | None = None,
    status: int = 200,
) -> Response:
    with api.stores.borrow() as store:
        recorded = policy_changes.recorded_bounds(store)[0]
        device_bounds = config_changes.recorded_bounds(store)[0]
    in_force = {**DEFAULT_BOUNDS, **recorded}
    rows = [
        {
            "key": key,
            "default": shown_value(getattr(DEFAULT_ALERT_POLICY, key)),
            "min": typed_value(policy_problems, f"{key}.min", in_force[key].low),
            "max": typed_value(policy_problems, f"{key}.max", in_force[key].high),
            "platform": DEFAULT_BOUNDS[key].text(),
            "set": key in recorded,
            "error": policy_problems.errors.get(key) if policy_problems else None,
        }
        for key in POLICY_KEYS
    ]
    numeric = [
        {
            "key": name,
            "min": typed_value(device_problems, f"{name}.min", _end(device_bounds, name, "min")),
            "max": typed_value(device_problems, f"{name}.max", _end(device_bounds, name, "max")),
            "error": device_problems.errors.get(name) if device_problems else None,
        }
        for name in NUMERIC_FIELDS
    ]
    modes = [
        {
            "key": name,
            "choices": [
                {"mode": mode.value, "ticked": _ticked(device_problems, device_bounds, name, mode)}
                for mode in InterlockMode
            ],
        }
        for name in MODE_FIELDS
    ]
    with api.engine.connect() as db:
        clinics = known_clinics(db)
    response = _page(
        request, "manage_policy_bounds.html", who, rows=rows, numeric=numeric, modes=modes,
        clinics=clinics, done=done, may_set=who.may(Action.SET_POLICY_BOUNDS),
        may_set_devices=who.may(Action.CONFIGURE_DEVICES),
    )  # fmt: skip
    response.status_code = status
    return response


def _end(bounds: ClinicBounds, name: str, end: str) -> int | None:
    found = bounds.numeric.get(name)  # type: ignore[call-overload]
    return None if found is None else int(getattr(found, end))


def _ticked(
    problems: FieldProblems | None, bounds: ClinicBounds, name: str, mode: InterlockMode
) -> bool:
    if problems is not None:
        return problems.typed.get(f"{name}.{mode.value}") == "yes"
    return mode in bounds.modes.get(name, ())  # type: ignore[call-overload]
