"""Changing desired configuration and sending tracked commands: each recorded as an
event naming its author (DESIGN §4), which the configuration delivery loop folds and
delivers (``services.config_delivery``).

A layer is recorded whole (``device_config.changed`` with the layer from now on and
the one before), in its own change stream; the newest such event of the stream is
the layer in force, so the store is the only place it lives.  A ``PUT`` of the layer
already recorded records nothing.
"""

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import orjson
from pydantic import BaseModel, ValidationError

from schemas import describe, utc_text
from schemas.config_events import (
    DEFAULT_CLINIC_BOUNDS,
    ClinicBounds,
    ConfigLayer,
    LayerSettings,
)
from schemas.device_config import CommandName, check_command_args
from schemas.streams import (
    FLEET_CONFIG_STREAM,
    clinic_config_stream,
    command_stream,
    device_config_stream,
    model_config_stream,
)
from services.api.commands import record_change, record_platform_event
from services.api.models import Accepted
from services.api.problems import unprocessable
from services.config_delivery import clinic_layer_problems
from services.eventstore import EventStore, StoredEvent

MIN_EXPIRY_S: Final = 10
MAX_EXPIRY_S: Final = 7 * 24 * 3600
"""A command waits at most as long as a device's broker session is kept (7 days)."""


def layer_stream(layer: ConfigLayer, subject: str | None) -> str:
    if layer is ConfigLayer.FLEET:
        return FLEET_CONFIG_STREAM
    if subject is None:
        raise ValueError(f"the {layer.value} layer needs a subject")
    if layer is ConfigLayer.MODEL:
        return model_config_stream(subject)
    if layer is ConfigLayer.CLINIC:
        return clinic_config_stream(subject)
    return device_config_stream(subject)


def recorded_layer(
    store: EventStore, layer: ConfigLayer, subject: str | None
) -> tuple[LayerSettings, StoredEvent | None, int]:
    """The layer in force, the event that set it (``None``: never set) and the
    stream's head seq."""
    events = store.read_stream(layer_stream(layer, subject))
    head = events[-1].seq if events else 0
    for event in reversed(events):
        if event.type == "device_config.changed":
            data = orjson.loads(event.body)["data"]
            if data["layer"] == layer.value:
                return LayerSettings.model_validate(data["settings"]), event, head
    return LayerSettings(), None, head


def change_layer(
    store: EventStore,
    layer: ConfigLayer,
    subject: str | None,
    settings: LayerSettings,
    author: str,
    bounds: ClinicBounds | None = None,
) -> Accepted | None:
    """Record ``settings`` as the layer from now on (``None``: it is so already).  A
    clinic's layer must keep within ``bounds`` (422 naming each field that does not)."""
    if layer is ConfigLayer.CLINIC:
        problems = clinic_layer_problems(settings, bounds or recorded_bounds(store)[0])
        if problems:
            raise unprocessable("; ".join(problems))
    previous, _, seq = recorded_layer(store, layer, subject)
    if previous.named() == settings.named():
        return None
    data = {"layer": layer.value, "subject": subject,
            "settings": settings.named(), "previous": previous.named()}  # fmt: skip
    stream_id = layer_stream(layer, subject)
    return record_change(store, stream_id, "device_config.changed", data, author, after_seq=seq)


def recorded_bounds(store: EventStore) -> tuple[ClinicBounds, StoredEvent | None, int]:
    """The bounds on clinic layers in force (the defaults until the manufacturer
    sets its own), the event that set them, and ``config:fleet``'s head seq."""
    events = store.read_stream(FLEET_CONFIG_STREAM)
    head = events[-1].seq if events else 0
    for event in reversed(events):
        if event.type == "device_config_bounds.changed":
            bounds = ClinicBounds.model_validate(orjson.loads(event.body)["data"]["bounds"])
            return bounds, event, head
    return DEFAULT_CLINIC_BOUNDS, None, head


def change_bounds(store: EventStore, bounds: ClinicBounds, author: str) -> Accepted | None:
    previous, _, seq = recorded_bounds(store)
    if previous == bounds:
        return None
    data = {"bounds": bounds.model_dump(mode="json"), "previous": previous.model_dump(mode="json")}
    return record_change(
        store, FLEET_CONFIG_STREAM, "device_config_bounds.changed", data, author, after_seq=seq
    )


class IssuedCommand(BaseModel):
    command_id: str
    cmd: CommandName
    expires_at: str
    recorded_at: str
    recorded: Accepted


def issue_command(
    store: EventStore,
    device_id: str,
    cmd: str,
    args: dict[str, Any],
    expires_in_s: int,
    author: str,
    now: datetime | None = None,
) -> IssuedCommand:
    """Record ``command.issued``; the delivery loop publishes it.  An unknown
    command, arguments the command does not take, or an expiry out of range is a 422
    and records nothing."""
    known = [name.value for name in CommandName]
    if cmd not in known:
        raise unprocessable(f"unknown command {cmd!r}: the commands are {', '.join(known)}")
    name = CommandName(cmd)
    try:
        checked = check_command_args(name, args)
    except ValidationError as error:
        raise unprocessable(f"args of {cmd}: {describe(error)}") from None
    if not MIN_EXPIRY_S <= expires_in_s <= MAX_EXPIRY_S:
        raise unprocessable(
            f"expires_in_s {expires_in_s} is outside {MIN_EXPIRY_S}..{MAX_EXPIRY_S} seconds"
        )
    moment = now or datetime.now(UTC)
    expires_at = utc_text(moment + timedelta(seconds=expires_in_s))
    command_id = str(uuid.uuid4())
    data = {"command_id": command_id, "cmd": name.value,
            "args": checked.model_dump(mode="json", exclude_defaults=True),
            "expires_at": expires_at, "issued_by": author}  # fmt: skip
    recorded = record_platform_event(
        store, command_stream(device_id), device_id, "command.issued", data
    )
    return IssuedCommand(
        command_id=command_id, cmd=name, expires_at=expires_at,
        recorded_at=utc_text(moment), recorded=recorded,
    )  # fmt: skip
