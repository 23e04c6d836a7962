"""Desired configuration: its layers (fleet, model, clinic, device), the bounds on
what a clinic's layer may say, and each device's desired, reported and refused
configuration (docs/device-configuration.md)."""

from typing import Annotated

import orjson
from fastapi import APIRouter, Depends, Path, Query

from schemas.config_events import ClinicBounds, ConfigLayer, LayerSettings
from schemas.fields import CLINIC_ID_PATTERN, DEVICE_ID_PATTERN
from services.api.access import Action, Principal
from services.api.config_changes import change_bounds, change_layer, recorded_bounds, recorded_layer
from services.api.config_models import ConvergenceOut, DeviceConfigOut, LayerOut
from services.api.deps import ClinicConfigurer, Db, DeviceReader, Store, allowed, principal
from services.api.models import Accepted
from services.api.pagination import CursorParam, Limit, Page, decode_cursor, next_cursor
from services.api.problems import ERROR_RESPONSES, forbidden, not_found
from services.api.queries.devices import device_visible
from services.config_delivery import ConfigState
from services.config_delivery.views import convergence, device_config_view, list_device_configs
from services.eventstore import EventStore

router = APIRouter(tags=["configuration"], responses=ERROR_RESPONSES)
DevicePath = Annotated[str, Path(pattern=DEVICE_ID_PATTERN, examples=["HP-000123"])]
ClinicPath = Annotated[str, Path(pattern=CLINIC_ID_PATTERN, examples=["clinic-7"])]
ModelPath = Annotated[str, Path(min_length=1, max_length=64, examples=["CL-200"])]
Configurer = Annotated[Principal, Depends(allowed(Action.CONFIGURE_DEVICES))]


@router.get("/config/layers/fleet", summary="The fleet layer of desired configuration")
def get_fleet_layer(who: Configurer, store: Store) -> LayerOut:
    return _layer(store, ConfigLayer.FLEET, None)


@router.put("/config/layers/fleet", summary="Set the fleet layer")
def set_fleet_layer(who: Configurer, store: Store, settings: LayerSettings) -> LayerOut:
    """The settings every handpiece enforces unless a later layer (model, clinic,
    device) says otherwise; only the fields given are set, ``{}`` sets none.  Recorded
    as ``device_config.changed`` with its author; every device whose merged settings
    change gets a new version, published retained on its ``config`` topic."""
    recorded = change_layer(store, ConfigLayer.FLEET, None, settings, who.author)
    return _layer(store, ConfigLayer.FLEET, None, recorded)


@router.get("/config/layers/models/{model}", summary="A model's layer")
def get_model_layer(who: Configurer, store: Store, model: ModelPath) -> LayerOut:
    return _layer(store, ConfigLayer.MODEL, model)


@router.put("/config/layers/models/{model}", summary="Set a model's layer")
def set_model_layer(
    who: Configurer, store: Store, model: ModelPath, settings: LayerSettings
) -> LayerOut:
    """For every device registered as ``model``; over the fleet layer."""
    recorded = change_layer(store, ConfigLayer.MODEL, model, settings, who.author)
    return _layer(store, ConfigLayer.MODEL, model, recorded)


@router.get("/config/layers/devices/{device_id}", summary="A device's own layer")
def get_device_layer(who: Configurer, store: Store, device_id: DevicePath) -> LayerOut:
    return _layer(store, ConfigLayer.DEVICE, device_id)


@router.put("/config/layers/devices/{device_id}", summary="Set a device's own layer")
def set_device_layer(
    who: Configurer, store: Store, device_id: DevicePath, settings: LayerSettings
) -> LayerOut:
    """The manufacturer's settings for one device, over every other layer."""
    recorded = change_layer(store, ConfigLayer.DEVICE, device_id, settings, who.author)
    return _layer(store, ConfigLayer.DEVICE, device_id, recorded)


@router.get("/clinics/{clinic_id}/config", summary="A clinic's layer", tags=["clinics"])
def get_clinic_layer(who: ClinicConfigurer, store: Store, clinic_id: ClinicPath) -> LayerOut:
    _clinic_in_scope(who, clinic_id)
    return _layer(store, ConfigLayer.CLINIC, clinic_id)


@router.put("/clinics/{clinic_id}/config", summary="Set a clinic's layer", tags=["clinics"])
def set_clinic_layer(
    who: ClinicConfigurer, store: Store, clinic_id: ClinicPath, settings: LayerSettings
) -> LayerOut:
    """For every device the clinic holds, over the model layer and within the
    manufacturer's bounds (``/config/clinic-bounds``): a field out of bounds, or not
    a clinic's to set, is a 422 naming it.  ``recalled_lots`` a clinic may add to,
    never take from: the fleet's recalls hold whatever the clinic says."""
    _clinic_in_scope(who, clinic_id)
    recorded = change_layer(store, ConfigLayer.CLINIC, clinic_id, settings, who.author)
    return _layer(store, ConfigLayer.CLINIC, clinic_id, recorded)


@router.get("/config/clinic-bounds", summary="What a clinic's layer may set")
def get_clinic_bounds(who: Annotated[Principal, Depends(principal)], store: Store) -> ClinicBounds:
    if not (who.may(Action.CONFIGURE_DEVICES) or who.may(Action.CONFIGURE_CLINIC)):
        raise forbidden(f"a {who.role.value} may not read configuration bounds")
    return recorded_bounds(store)[0]


@router.put("/config/clinic-bounds", summary="Set what a clinic's layer may set")
def set_clinic_bounds(who: Configurer, store: Store, bounds: ClinicBounds) -> ClinicBounds:
    """Per numeric field its range, per interlock mode the choices a clinic may make,
    e.g. ``{"numeric": {"heartbeat_interval_s": {"min": 10, "max": 600}}, "modes":
    {"cartridge_life_mode": ["block"]}}``.  A field left out is not a clinic's to set.
    In force at once: clinic layers already set are held to the new bounds at the
    next merge (a number clamped, a mode no longer allowed ignored)."""
    change_bounds(store, bounds, who.author)
    return bounds


@router.get("/devices/{device_id}/config", summary="A device's configuration", tags=["devices"])
def get_device_config(who: DeviceReader, db: Db, device_id: DevicePath) -> DeviceConfigOut:
    """Desired (version, digest, settings), reported (the version the device said it
    applied) and refused (the version it refused, and why), and where it stands."""
    if not device_visible(db, who, device_id):
        raise not_found("device")
    view = device_config_view(db, device_id)
    if view is None:
        raise not_found("configuration (the device is not registered)")
    return DeviceConfigOut.of(view)


@router.get("/fleet/config-devices", summary="Devices by configuration state")
def list_configs(
    who: DeviceReader,
    db: Db,
    state: ConfigState | None = None,
    clinic_id: Annotated[str | None, Query(pattern=CLINIC_ID_PATTERN)] = None,
    cursor: CursorParam = None,
    limit: Limit = 100,
) -> Page[DeviceConfigOut]:
    """Devices with a desired configuration, in serial order; a clinic sees its own."""
    after = decode_cursor(cursor, (str,))
    clinics = _clinics(who, clinic_id)
    rows = list_device_configs(
        db, clinic_ids=clinics, state=state, after=None if after is None else after[0],
        limit=limit + 1,
    )  # fmt: skip
    items = [DeviceConfigOut.of(row) for row in rows[:limit]]
    return Page(items=items, next_cursor=next_cursor(rows, limit, lambda row: [row.device_id]))


@router.get("/fleet/config-convergence", summary="How many devices are at their desired version")
def get_convergence(
    who: DeviceReader,
    db: Db,
    clinic_id: Annotated[str | None, Query(pattern=CLINIC_ID_PATTERN)] = None,
) -> ConvergenceOut:
    clinics = _clinics(who, clinic_id)
    return ConvergenceOut.of(convergence(db, None if clinics is None else clinics[0]))


def _clinics(who: Principal, clinic_id: str | None) -> list[str] | None:
    """The clinics a listing covers: the one asked for (if in scope), the
    principal's own, or every one (``None``)."""
    if who.clinic_id is not None:
        if clinic_id is not None and clinic_id != who.clinic_id:
            return ["\x00none"]  # another clinic's: nothing, as if it had no devices
        return [who.clinic_id]
    return None if clinic_id is None else [clinic_id]


def _clinic_in_scope(who: Principal, clinic_id: str) -> None:
    if not who.sees(clinic_id):
        raise not_found("clinic")


def _layer(
    store: EventStore, layer: ConfigLayer, subject: str | None, recorded: Accepted | None = None
) -> LayerOut:
    settings, event, _ = recorded_layer(store, layer, subject)
    by = None if event is None else orjson.loads(event.body)["data"]["by"]
    return LayerOut(
        layer=layer, subject=subject, settings=settings.named(),
        changed_at=None if event is None else event.occurred_at.isoformat(),
        changed_by=by, recorded=recorded,
    )  # fmt: skip
