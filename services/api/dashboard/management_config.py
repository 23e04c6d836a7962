"""Configuration and command screens for the manufacturer: the layers of desired
configuration and the clinic bounds, where every device stands (pending, applied,
refused) and the fleet's convergence; tracked commands sent and followed.  The same
changes as ``PUT /api/v1/config/layers/…`` and ``POST …/devices/{id}/commands``,
recorded as the same events with the signed-in person as author.  Registered on
the dashboard's router when the package loads."""

import json
import re
from typing import Annotated, Any, Final
from urllib.parse import quote

from fastapi import Form, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy import select

from schemas import describe
from schemas.config_events import ConfigLayer, LayerSettings
from schemas.device_config import CommandName
from schemas.fields import DEVICE_ID_PATTERN
from services.api.access import Action, Principal
from services.api.config_changes import change_layer, issue_command, recorded_bounds
from services.api.dashboard import form_fields
from services.api.dashboard.form_fields import FormInputError
from services.api.dashboard.routes import Api, Viewer, _page, _require, router
from services.api.deps import SameSiteForm
from services.api.problems import Problem
from services.api.queries.devices import is_registered
from services.config_delivery import ConfigState, config_layers
from services.config_delivery.views import convergence, list_commands, list_device_configs

_SHOWN: Final = 200
_STATES: Final = ("pending", "refused", "applied")
_COMMAND_STATES: Final = ("pending", "acknowledged", "rejected", "expired")


@router.get("/manage/config")
def config_page(
    request: Request, who: Viewer, api: Api, state: str | None = None, done: str | None = None
) -> Response:
    _require(who, Action.CONFIGURE_DEVICES)
    return _config_page(request, who, api, state=state, done=done)


@router.post("/manage/config")
def set_layer(
    request: Request,
    who: Viewer,
    same_site: SameSiteForm,
    api: Api,
    layer: Annotated[str, Form()] = "",
    subject: Annotated[str, Form()] = "",
    settings: Annotated[str, Form()] = "",
) -> Response:
    _require(who, Action.CONFIGURE_DEVICES)
    try:
        chosen, named = _layer(layer, subject)
        wanted = _settings(settings)
        with api.stores.borrow() as store:
            recorded = change_layer(store, chosen, named, wanted, who.author)
    except FormInputError as error:
        return _config_page(request, who, api, problem=str(error), status=400)
    except Problem as problem:
        return _config_page(request, who, api, problem=problem.detail, status=problem.status)
    done = "recorded" if recorded is not None else "unchanged"
    return RedirectResponse(f"/manage/config?done={done}", status_code=303)


@router.get("/manage/commands")
def commands_page(
    request: Request,
    who: Viewer,
    api: Api,
    device_id: str | None = None,
    state: str | None = None,
    sent: str | None = None,
) -> Response:
    _require(who, Action.SEND_COMMANDS)
    return _commands_page(request, who, api, device_id=device_id, state=state, sent=sent)


@router.post("/manage/commands")
def send_command(  # noqa: PLR0913 - one form field each
    request: Request,
    who: Viewer,
    same_site: SameSiteForm,
    api: Api,
    *,
    device_id: Annotated[str, Form()] = "",
    cmd: Annotated[str, Form()] = "",
    args: Annotated[str, Form()] = "",
    expires_in_s: Annotated[str, Form()] = "3600",
) -> Response:
    _require(who, Action.SEND_COMMANDS)
    try:
        serial = form_fields.device_id(device_id, "Serial")
        arguments = _arguments(args)
        expiry = form_fields.whole_number(expires_in_s, "Expires in (seconds)", 1, 30 * 86_400)
        _registered(api, serial)
        with api.stores.borrow() as store:
            issued = issue_command(store, serial, cmd, arguments, expiry, who.author)
    except FormInputError as error:
        return _commands_page(request, who, api, device_id=device_id, problem=str(error),
                              status=400)  # fmt: skip
    except Problem as problem:
        return _commands_page(request, who, api, device_id=device_id, problem=problem.detail,
                              status=problem.status)  # fmt: skip
    target = f"/manage/commands?device_id={quote(serial)}&sent={quote(issued.command_id)}"
    return RedirectResponse(target, status_code=303)


def _config_page(
    request: Request,
    who: Principal,
    api: Api,
    *,
    state: str | None = None,
    done: str | None = None,
    problem: str | None = None,
    status: int = 200,
) -> Response:
    wanted = ConfigState(state) if state in _STATES else None
    with api.engine.connect() as db:
        fleet = convergence(db)
        devices = list_device_configs(db, state=wanted, limit=_SHOWN)
        layers = [dict(row._mapping) for row in db.execute(
            select(config_layers).order_by(config_layers.c.layer, config_layers.c.subject)
        )]  # fmt: skip
    with api.stores.borrow() as store:
        bounds = recorded_bounds(store)[0]
    messages = {"recorded": "Layer recorded: devices get their new version within seconds.",
                "unchanged": "The layer is so already: nothing recorded."}  # fmt: skip
    response = _page(
        request, "manage_config.html", who, fleet=fleet, devices=devices, layers=layers,
        bounds=bounds.model_dump(mode="json"), state=wanted, done=messages.get(done or ""),
        problem=problem, layer_names=[layer.value for layer in ConfigLayer],
    )  # fmt: skip
    response.status_code = status
    return response


def _commands_page(  # noqa: PLR0913 - the page's parts
    request: Request,
    who: Principal,
    api: Api,
    *,
    device_id: str | None = None,
    state: str | None = None,
    sent: str | None = None,
    problem: str | None = None,
    status: int = 200,
) -> Response:
    serial = device_id if device_id and re.fullmatch(DEVICE_ID_PATTERN, device_id) else None
    with api.engine.connect() as db:
        commands = list_commands(
            db, serial, state=state if state in _COMMAND_STATES else None, limit=_SHOWN
        )
    response = _page(
        request, "manage_commands.html", who, commands=commands, device_id=serial or "",
        state=state, sent=sent, problem=problem, names=[name.value for name in CommandName],
    )  # fmt: skip
    response.status_code = status
    return response


def _registered(api: Api, serial: str) -> None:
    with api.engine.connect() as db:
        if not is_registered(db, serial):
            raise FormInputError(f"{serial} is not registered.")


def _layer(layer: str, subject: str) -> tuple[ConfigLayer, str | None]:
    try:
        chosen = ConfigLayer(layer)
    except ValueError:
        raise FormInputError("Layer: fleet, model, clinic or device.") from None
    named = subject.strip()
    if chosen is ConfigLayer.FLEET:
        return chosen, None
    if not named:
        raise FormInputError(f"The {chosen.value} layer needs its {chosen.value}.")
    if chosen is ConfigLayer.DEVICE:
        form_fields.device_id(named, "Serial")
    elif chosen is ConfigLayer.CLINIC:
        form_fields.clinic_id(named)
    else:
        form_fields.model(named)
    return chosen, named


def _settings(text: str) -> LayerSettings:
    try:
        return LayerSettings.model_validate_json(text.strip() or "{}")
    except ValidationError as error:
        raise FormInputError(f"Settings: {describe(error)}") from None


def _arguments(text: str) -> dict[str, Any]:
    try:
        found = json.loads(text.strip() or "{}")
    except json.JSONDecodeError as error:
        raise FormInputError(f"Arguments are not JSON: {error.msg}.") from None
    if not isinstance(found, dict):
        raise FormInputError('Arguments: a JSON object, e.g. {"reason": "inspection"}.')
    return found
