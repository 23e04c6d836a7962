"""Merging a device's configuration layers into the settings it enforces, and the
manufacturer's bounds on what a clinic's layer may say.  Pure: values in, values out.

The clinic layer is checked against the bounds twice: when a clinic sets it (a value
out of bounds is refused with what the bound is), and at every merge, against the
bounds in force then, so bounds narrowed later hold at once for every device: a
number is clamped into its range, a mode the bounds no longer allow is ignored (the
layers below decide), a field that is not the clinic's to set is ignored.
"""

from dataclasses import dataclass
from typing import Any

from schemas.config_events import (
    DEFAULT_CLINIC_BOUNDS,
    MODE_FIELDS,
    NUMERIC_FIELDS,
    ClinicBounds,
    LayerSettings,
)
from schemas.device_config import DEFAULT_SETTINGS, DeviceSettings

EMPTY_LAYER = LayerSettings()
_PLATFORM_ONLY = frozenset({"service_due_at_actuations", "service_interval_actuations"})
"""Service limits follow the manufacturer's service plan: never a clinic's to set."""


@dataclass(frozen=True, slots=True)
class DeviceLayers:
    """The four layers that apply to one device, in merge order."""

    fleet: LayerSettings = EMPTY_LAYER
    model: LayerSettings = EMPTY_LAYER
    clinic: LayerSettings = EMPTY_LAYER
    device: LayerSettings = EMPTY_LAYER


def merge(
    layers: DeviceLayers,
    bounds: ClinicBounds = DEFAULT_CLINIC_BOUNDS,
    last_service_actuations: int | None = None,
) -> DeviceSettings:
    """The settings the device enforces: the fleet's defaults, then each layer's
    fields (later layers win; ``recalled_lots`` add up), the clinic's within
    ``bounds``.  ``service_due_at_actuations`` set by a layer wins; otherwise a
    ``service_interval_actuations`` gives it as the last service's count (0 before
    any) plus the interval."""
    merged: dict[str, Any] = DEFAULT_SETTINGS.model_dump(mode="json")
    lots: list[str] = list(merged["recalled_lots"])
    interval: int | None = None
    due_set = False
    for layer in (layers.fleet, layers.model, bounded(layers.clinic, bounds), layers.device):
        for name, value in layer.named().items():
            if name == "recalled_lots":
                lots.extend(lot for lot in value if lot not in lots)
            elif name == "service_interval_actuations":
                interval = value
            else:
                merged[name] = value
                due_set = due_set or name == "service_due_at_actuations"
    merged["recalled_lots"] = sorted(lots)
    if not due_set and interval is not None:
        merged["service_due_at_actuations"] = (last_service_actuations or 0) + interval
    return DeviceSettings.model_validate(merged)


def bounded(clinic: LayerSettings, bounds: ClinicBounds) -> LayerSettings:
    """The part of a clinic's layer the bounds in force let through (see the module
    doc)."""
    kept: dict[str, Any] = {}
    for name, value in clinic.named().items():
        if name == "recalled_lots":
            kept[name] = value
        elif name in bounds.numeric:
            bound = bounds.numeric[name]
            kept[name] = min(max(value, bound.min), bound.max)
        elif name in bounds.modes and value in bounds.modes[name]:
            kept[name] = value
    return LayerSettings.model_validate(kept)


def clinic_layer_problems(clinic: LayerSettings, bounds: ClinicBounds) -> list[str]:
    """Why a clinic may not set this layer, one line per field (empty: it may)."""
    problems = []
    for name, value in clinic.named().items():
        if name == "recalled_lots":
            continue
        if name in _PLATFORM_ONLY:
            problems.append(f"{name} is set by the manufacturer, not by a clinic")
        elif name in NUMERIC_FIELDS:
            bound = bounds.numeric.get(name)
            if bound is None:
                problems.append(f"{name} is not a clinic's to set (the manufacturer's bounds)")
            elif not bound.min <= value <= bound.max:
                problems.append(f"{name} {value} is outside {bound.min}..{bound.max}")
        elif name in MODE_FIELDS:
            allowed = bounds.modes.get(name, ())
            if value not in allowed:
                choices = "|".join(allowed) or "nothing"
                problems.append(f"{name} {value!r} is not allowed: the bounds allow {choices}")
    return problems


def describe_layer(layer: LayerSettings) -> str:
    """``a=1, b=warn`` for messages and the dashboard."""
    return ", ".join(f"{name}={value}" for name, value in sorted(layer.named().items())) or "-"
