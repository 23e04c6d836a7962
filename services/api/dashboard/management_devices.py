"""Service and assignment screens for the manufacturer: register a device, assign it to
a clinic (or take it back), record a service visit, and see each device's registry
history.  The same commands as ``POST /api/v1/devices``, ``PUT …/clinic`` and ``POST
…/services``, recorded as the same platform events with the signed-in person as
author.  Registered on the dashboard's router when the package loads.

A service visit records the actuator's count at the visit (``actuations_at_service``),
prefilled with the lifetime count the device has reported: the device's desired
configuration counts its next service point from it, and the handpiece's
``service_overdue`` interlock is released when that configuration reaches it.
"""

from typing import Annotated, Final
from urllib.parse import quote

from fastapi import Form, Request
from fastapi.responses import RedirectResponse, Response

from services.api import commands
from services.api.access import Action, Principal
from services.api.dashboard import form_fields
from services.api.dashboard.form_fields import FormInputError
from services.api.dashboard.routes import Api, PageRefused, Viewer, _page, _require, router
from services.api.deps import SameSiteForm
from services.api.queries.registry import (
    as_moment,
    known_clinics,
    managed_device,
    managed_devices,
    registry_history,
)

_DONE: Final = {
    "registered": "Registered.",
    "assigned": "Assignment recorded.",
    "serviced": "Service visit recorded: the device's service point moves with its next "
    "configuration.",
}
_MAX_NOTES: Final = 2000


@router.get("/manage/devices")
def devices_page(request: Request, who: Viewer, api: Api, done: str | None = None) -> Response:
    _require(who, Action.MANAGE_DEVICES)
    return _devices_page(request, who, api, done=_DONE.get(done or ""))


@router.post("/manage/devices")
def register(
    request: Request,
    who: Viewer,
    same_site: SameSiteForm,
    api: Api,
    device_id: Annotated[str, Form()] = "",
    model: Annotated[str, Form()] = "",
    clinic_id: Annotated[str, Form()] = "",
) -> Response:
    _require(who, Action.MANAGE_DEVICES)
    try:
        serial, model_name = form_fields.device_id(device_id, "Serial"), form_fields.model(model)
        clinic = form_fields.clinic_id(clinic_id)
    except FormInputError as error:
        return _devices_page(request, who, api, problem=str(error), status=400)
    with api.engine.connect() as db, api.stores.borrow() as store:
        # From the registry stream, not the read model: a registration a moment ago
        # that the projector has not folded yet counts.
        known = managed_device(db, store, serial)
    if known is not None and known.registered:
        problem = f"{serial} is registered already: assign or service it on its page."
        return _devices_page(request, who, api, problem=problem, status=409)
    with api.stores.borrow() as store:
        commands.register_device(store, serial, model_name, who.author)
        if clinic is not None:
            commands.assign_device(store, serial, clinic, who.author)
    return RedirectResponse(f"/manage/devices/{quote(serial)}?done=registered", status_code=303)


@router.get("/manage/devices/{device_id}")
def device_page(
    request: Request, who: Viewer, api: Api, device_id: str, done: str | None = None
) -> Response:
    _require(who, Action.MANAGE_DEVICES)
    return _device_page(request, who, api, device_id, done=_DONE.get(done or ""))


@router.post("/manage/devices/{device_id}/assign")
def assign(
    request: Request,
    who: Viewer,
    same_site: SameSiteForm,
    api: Api,
    device_id: str,
    clinic_id: Annotated[str, Form()] = "",
) -> Response:
    _require(who, Action.MANAGE_DEVICES)
    _known(api, device_id)
    try:
        clinic = form_fields.clinic_id(clinic_id)
    except FormInputError as error:
        return _device_page(request, who, api, device_id, problem=str(error), status=400)
    with api.stores.borrow() as store:
        commands.assign_device(store, device_id, clinic, who.author)
    return RedirectResponse(f"/manage/devices/{quote(device_id)}?done=assigned", status_code=303)


@router.post("/manage/devices/{device_id}/service")
def service(
    request: Request,
    who: Viewer,
    same_site: SameSiteForm,
    api: Api,
    device_id: str,
    actuations_at_service: Annotated[str, Form()] = "",
    notes: Annotated[str, Form()] = "",
) -> Response:
    _require(who, Action.MANAGE_DEVICES)
    _known(api, device_id)
    try:
        counted = form_fields.whole_number(actuations_at_service, "Actuations at service")
        said = _notes(notes)
    except FormInputError as error:
        return _device_page(request, who, api, device_id, problem=str(error), status=400)
    with api.stores.borrow() as store:
        commands.record_service(store, device_id, said, counted, who.author)
    return RedirectResponse(f"/manage/devices/{quote(device_id)}?done=serviced", status_code=303)


def _devices_page(
    request: Request,
    who: Principal,
    api: Api,
    *,
    done: str | None = None,
    problem: str | None = None,
    status: int = 200,
) -> Response:
    with api.engine.connect() as db:
        devices, clinics = managed_devices(db), known_clinics(db)
    response = _page(
        request, "manage_devices.html", who, devices=devices, clinics=clinics, done=done,
        problem=problem, as_moment=as_moment,
    )  # fmt: skip
    response.status_code = status
    return response


def _device_page(
    request: Request,
    who: Principal,
    api: Api,
    device_id: str,
    *,
    done: str | None = None,
    problem: str | None = None,
    status: int = 200,
) -> Response:
    with api.engine.connect() as db, api.stores.borrow() as store:
        device, clinics = managed_device(db, store, device_id), known_clinics(db)
        if device is None:
            raise PageRefused(404, "There is no such device.")
        history = registry_history(store, device_id)
    response = _page(
        request, "manage_device.html", who, device=device, clinics=clinics, history=history,
        done=done, problem=problem, as_moment=as_moment,
    )  # fmt: skip
    response.status_code = status
    return response


def _known(api: Api, device_id: str) -> None:
    with api.engine.connect() as db, api.stores.borrow() as store:
        if managed_device(db, store, device_id) is None:
            raise PageRefused(404, "There is no such device.")


def _notes(text: str) -> str:
    if len(text) > _MAX_NOTES:
        raise FormInputError(f"Notes: at most {_MAX_NOTES:,} characters.")
    return text.strip()
