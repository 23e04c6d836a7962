"""The fold behind configuration delivery and command tracking: layers, registry
facts and the devices' answers in, each device's desired configuration (with its
version) and reported state, and each command's state, out.  Pure: the loop around
it (``services.config_delivery.loop``) reads the store and saves what changed.

A device's desired version grows by one each time its merged settings change (a
layer, the bounds, its model, its clinic or its last service), and only then: a
change that merges to the same settings publishes nothing.  Folded in the store's
global order, the same events give the same versions on every run.
"""

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final

from schemas.config_events import DEFAULT_CLINIC_BOUNDS, ClinicBounds, ConfigLayer, LayerSettings
from schemas.device_config import DeviceSettings, settings_digest
from services.config_delivery.layers import EMPTY_LAYER, DeviceLayers, merge

LayerKey = tuple[ConfigLayer, str]
"""A layer and its subject ('' for the fleet)."""
FLEET_KEY: Final = (ConfigLayer.FLEET, "")
BOUNDS_LAYER: Final = "bounds"


class ConfigState(StrEnum):
    """Where a device stands with its desired configuration."""

    APPLIED = "applied"
    """It reported applying the desired version."""
    PENDING = "pending"
    """It has not answered the desired version yet (offline, or on its way)."""
    REFUSED = "refused"
    """It refused the desired version: it keeps enforcing the one it had."""


class CommandState(StrEnum):
    PENDING = "pending"
    ACKNOWLEDGED = "acknowledged"
    REJECTED = "rejected"
    EXPIRED = "expired"


@dataclass(slots=True)
class DeviceConfig:
    """One device: the registry facts its merge needs, what it should enforce, and
    what it reported."""

    device_id: str
    model: str | None = None
    clinic_id: str | None = None
    registered: bool = False
    decommissioned: bool = False
    last_service_actuations: int | None = None
    desired_version: int = 0
    desired_digest: str | None = None
    desired_settings: DeviceSettings | None = None
    desired_at: str | None = None
    reported_version: int = 0
    reported_digest: str | None = None
    applied_at: str | None = None
    refused_version: int = 0
    refused_reason: str | None = None
    refused_at: str | None = None

    @property
    def delivered(self) -> bool:
        """Whether the platform publishes a configuration for it."""
        return self.registered and not self.decommissioned and self.desired_version > 0

    @property
    def state(self) -> ConfigState | None:
        if not self.desired_version:
            return None
        if (self.reported_version, self.reported_digest) == (
            self.desired_version,
            self.desired_digest,
        ):
            return ConfigState.APPLIED
        if self.refused_version == self.desired_version:
            return ConfigState.REFUSED
        return ConfigState.PENDING


@dataclass(slots=True)
class Command:
    command_id: str
    device_id: str
    cmd: str
    args: dict[str, Any]
    issued_by: str
    issued_at: str
    expires_at: str
    state: CommandState = CommandState.PENDING
    answered_at: str | None = None
    expired_at: str | None = None
    reason: str | None = None
    """Why the device rejected it."""
    detail: str | None = None
    result: dict[str, Any] = field(default_factory=dict)

    @property
    def answered(self) -> bool:
        return self.state in {CommandState.ACKNOWLEDGED, CommandState.REJECTED}


@dataclass(frozen=True, slots=True)
class Folded:
    """One event as the book reads it."""

    stream_id: str
    device_id: str
    type: str
    occurred_at: str
    data: dict[str, Any]


@dataclass(slots=True)
class BookChanges:
    """What a batch changed: rows to save, and messages to publish."""

    layers: set[LayerKey] = field(default_factory=set)
    bounds: bool = False
    devices: set[str] = field(default_factory=set)
    """Rows to save (desired or reported changed)."""
    republish: set[str] = field(default_factory=set)
    """Devices whose desired configuration changed (or ended: decommissioned)."""
    commands: dict[str, Command] = field(default_factory=dict)
    """Command rows to save."""
    issued: list[Command] = field(default_factory=list)
    """Commands to publish, in the order they were issued."""


@dataclass(slots=True)
class ConfigBook:
    layers: dict[LayerKey, LayerSettings] = field(default_factory=dict)
    bounds: ClinicBounds = DEFAULT_CLINIC_BOUNDS
    devices: dict[str, DeviceConfig] = field(default_factory=dict)
    open_commands: dict[str, Command] = field(default_factory=dict)
    """Commands not yet answered (pending or expired): a late answer still counts."""
    authors: dict[tuple[str, str], tuple[str, str]] = field(default_factory=dict)
    """When and by whom each layer (``(layer, subject)``) and the bounds
    (``("bounds", "")``) last changed."""

    def fold(self, events: Iterable[Folded]) -> BookChanges:
        changes = BookChanges()
        for event in events:
            handler = _HANDLERS.get(event.type)
            if handler is not None:
                handler(self, event, changes)
        return changes

    def layers_of(self, device: DeviceConfig) -> DeviceLayers:
        def find(layer: ConfigLayer, subject: str | None) -> LayerSettings:
            if subject is None:
                return EMPTY_LAYER
            return self.layers.get((layer, subject), EMPTY_LAYER)

        return DeviceLayers(
            fleet=self.layers.get(FLEET_KEY, EMPTY_LAYER),
            model=find(ConfigLayer.MODEL, device.model),
            clinic=find(ConfigLayer.CLINIC, device.clinic_id),
            device=find(ConfigLayer.DEVICE, device.device_id),
        )

    def merged(self, device: DeviceConfig) -> DeviceSettings:
        return merge(self.layers_of(device), self.bounds, device.last_service_actuations)

    # -- what changes what ------------------------------------------------------

    def _device(self, device_id: str) -> DeviceConfig:
        found = self.devices.get(device_id)
        if found is None:
            found = self.devices[device_id] = DeviceConfig(device_id)
        return found

    def _remerge(self, devices: Iterable[DeviceConfig], at: str, changes: BookChanges) -> None:
        for device in devices:
            if not device.registered or device.decommissioned:
                continue
            settings = self.merged(device)
            digest = settings_digest(settings)
            if digest == device.desired_digest:
                continue
            device.desired_version += 1
            device.desired_digest = digest
            device.desired_settings = settings
            device.desired_at = at
            changes.devices.add(device.device_id)
            changes.republish.add(device.device_id)

    def _affected(self, layer: ConfigLayer, subject: str) -> list[DeviceConfig]:
        if layer is ConfigLayer.FLEET:
            return list(self.devices.values())
        if layer is ConfigLayer.MODEL:
            return [device for device in self.devices.values() if device.model == subject]
        if layer is ConfigLayer.CLINIC:
            return [device for device in self.devices.values() if device.clinic_id == subject]
        return [self.devices[subject]] if subject in self.devices else []


def _layer_changed(book: ConfigBook, event: Folded, changes: BookChanges) -> None:
    layer = ConfigLayer(event.data["layer"])
    subject = event.data.get("subject") or ""
    book.layers[(layer, subject)] = LayerSettings.model_validate(event.data["settings"])
    book.authors[(layer.value, subject)] = (event.occurred_at, event.data["by"])
    changes.layers.add((layer, subject))
    book._remerge(book._affected(layer, subject), event.occurred_at, changes)


def _bounds_changed(book: ConfigBook, event: Folded, changes: BookChanges) -> None:
    book.bounds = ClinicBounds.model_validate(event.data["bounds"])
    book.authors[(BOUNDS_LAYER, "")] = (event.occurred_at, event.data["by"])
    changes.bounds = True
    book._remerge(list(book.devices.values()), event.occurred_at, changes)


def _registered(book: ConfigBook, event: Folded, changes: BookChanges) -> None:
    device = book._device(event.device_id)
    device.registered = True
    device.model = event.data.get("model")
    changes.devices.add(device.device_id)
    book._remerge([device], event.occurred_at, changes)


def _assigned(book: ConfigBook, event: Folded, changes: BookChanges) -> None:
    device = book._device(event.device_id)
    device.clinic_id = event.data.get("clinic_id")
    changes.devices.add(device.device_id)
    book._remerge([device], event.occurred_at, changes)


def _serviced(book: ConfigBook, event: Folded, changes: BookChanges) -> None:
    counted = event.data.get("actuations_at_service")
    if counted is None:
        return  # a visit without a count moves no service limit
    device = book._device(event.device_id)
    device.last_service_actuations = counted
    changes.devices.add(device.device_id)
    book._remerge([device], event.occurred_at, changes)


def _decommissioned(book: ConfigBook, event: Folded, changes: BookChanges) -> None:
    device = book._device(event.device_id)
    device.decommissioned = True
    changes.devices.add(device.device_id)
    changes.republish.add(device.device_id)  # its retained configuration is cleared


def _applied(book: ConfigBook, event: Folded, changes: BookChanges) -> None:
    device = book._device(event.device_id)
    version = event.data["version"]
    if version < device.reported_version:
        return  # an older answer folded late changes nothing
    device.reported_version = version
    device.reported_digest = event.data["digest"]
    device.applied_at = event.occurred_at
    changes.devices.add(device.device_id)


def _refused(book: ConfigBook, event: Folded, changes: BookChanges) -> None:
    device = book._device(event.device_id)
    device.refused_version = event.data["version"]
    device.refused_reason = event.data["reason"]
    device.refused_at = event.occurred_at
    changes.devices.add(device.device_id)


def _issued(book: ConfigBook, event: Folded, changes: BookChanges) -> None:
    data = event.data
    command_id = str(data["command_id"])
    if command_id in book.open_commands:
        return
    command = book.open_commands[command_id] = Command(
        command_id=command_id, device_id=event.device_id, cmd=data["cmd"],
        args=dict(data.get("args") or {}), issued_by=data["issued_by"],
        issued_at=event.occurred_at, expires_at=data["expires_at"],
    )  # fmt: skip
    changes.commands[command_id] = command
    changes.issued.append(command)


def _expired(book: ConfigBook, event: Folded, changes: BookChanges) -> None:
    command = book.open_commands.get(str(event.data["command_id"]))
    if command is None or command.state is not CommandState.PENDING:
        return
    command.state = CommandState.EXPIRED
    command.expired_at = event.occurred_at
    changes.commands[command.command_id] = command


def _answered(book: ConfigBook, event: Folded, changes: BookChanges) -> None:
    """The device's answer wins over an expiry recorded before it arrived: it says
    what the handpiece did."""
    command = book.open_commands.get(str(event.data["command_id"]))
    if command is None or command.device_id != event.device_id:
        return  # not a command the platform issued to this device
    del book.open_commands[command.command_id]
    acknowledged = event.type == "command.acknowledged"
    command.state = CommandState.ACKNOWLEDGED if acknowledged else CommandState.REJECTED
    command.answered_at = event.occurred_at
    command.reason = None if acknowledged else event.data.get("reason")
    command.detail = None if acknowledged else event.data.get("detail") or None
    command.result = dict(event.data.get("result") or {}) if acknowledged else {}
    changes.commands[command.command_id] = command


_HANDLERS: Final = {
    "device_config.changed": _layer_changed,
    "device_config_bounds.changed": _bounds_changed,
    "device.registered": _registered,
    "device.assigned": _assigned,
    "device.serviced": _serviced,
    "device.decommissioned": _decommissioned,
    "config.applied": _applied,
    "config.refused": _refused,
    "command.issued": _issued,
    "command.expired": _expired,
    "command.acknowledged": _answered,
    "command.rejected": _answered,
}
"""Every other event type changes nothing here."""
FOLDED_TYPES: Final = frozenset(_HANDLERS)
