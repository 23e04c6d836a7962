"""Changes to the desired configuration of handpieces: its layers and the bounds on
the clinics' layer, recorded like every change a person makes (``schemas.change_events``).

A device's desired settings are merged from four layers, later ones winning:

* ``fleet`` (stream ``config:fleet``), the manufacturer's defaults for every device;
* ``model`` (``config:model:{model}``), per handpiece model;
* ``clinic`` (``config:clinic:{clinic_id}``), set by the clinic's staff within the
  manufacturer's bounds (``device_config_bounds.changed`` in ``config:fleet``);
* ``device`` (``config:device:{device_id}``), the manufacturer's, for one device.

A layer names only what it sets (``LayerSettings``, every field optional).
"""

from enum import StrEnum
from typing import Annotated, Any, Final, Literal, Self, get_args

from pydantic import BaseModel, Field, model_validator

from schemas.device_config import InterlockMode, Lot, Percent, Seconds
from schemas.envelope import EventEnvelope
from schemas.fields import FROZEN_STRICT_SHAPE, Author, Count, PositiveCount, ShortText


class ConfigLayer(StrEnum):
    FLEET = "fleet"
    MODEL = "model"
    CLINIC = "clinic"
    DEVICE = "device"


LAYER_ORDER: Final = (ConfigLayer.FLEET, ConfigLayer.MODEL, ConfigLayer.CLINIC, ConfigLayer.DEVICE)
"""The merge order: a later layer overrides an earlier one."""


class LayerSettings(BaseModel):
    """What one layer sets: the fields of ``DeviceSettings`` it names (a field left
    out is not set by this layer; ``service_due_at_actuations: null`` is set, to "no
    limit"), plus ``service_interval_actuations``, from which the platform derives a
    device's ``service_due_at_actuations`` (its last service's count plus the
    interval).  ``recalled_lots`` add up across layers: no layer removes a lot
    another recalled."""

    model_config = FROZEN_STRICT_SHAPE

    heartbeat_interval_s: Seconds | None = None
    event_flush_interval_s: Seconds | None = None
    needle_life_warning_pct: Percent | None = None
    needle_life_critical_pct: Percent | None = None
    cartridge_life_mode: InterlockMode | None = None
    recalled_lots: tuple[Lot, ...] | None = None
    service_due_at_actuations: Count | None = None
    service_overdue_mode: InterlockMode | None = None
    service_interval_actuations: PositiveCount | None = None

    @model_validator(mode="before")
    @classmethod
    def _null_is_unset(cls, given: Any) -> Any:
        """``null`` leaves a field unset, except ``service_due_at_actuations``, where
        it is a value ("no limit"): the merge never meets a null where a device
        setting needs a value."""
        if not isinstance(given, dict):
            return given
        return {
            name: value
            for name, value in given.items()
            if value is not None or name == "service_due_at_actuations"
        }

    def named(self) -> dict[str, Any]:
        """The fields this layer sets, as JSON values."""
        return self.model_dump(mode="json", include=self.model_fields_set)


NumericField = Literal[
    "heartbeat_interval_s",
    "event_flush_interval_s",
    "needle_life_warning_pct",
    "needle_life_critical_pct",
]
ModeField = Literal["cartridge_life_mode", "service_overdue_mode"]
NUMERIC_FIELDS: Final[tuple[NumericField, ...]] = get_args(NumericField)
MODE_FIELDS: Final[tuple[ModeField, ...]] = get_args(ModeField)


class NumericBound(BaseModel):
    model_config = FROZEN_STRICT_SHAPE

    min: Annotated[int, Field(strict=True, ge=0, le=86_400)]
    max: Annotated[int, Field(strict=True, ge=0, le=86_400)]
    """Within the largest any numeric setting takes (a day, in seconds)."""

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.min > self.max:
            raise ValueError(f"min {self.min} is above max {self.max}")
        return self


class ClinicBounds(BaseModel):
    """What a clinic's layer may set: each numeric field within its range, each
    interlock mode among the choices allowed.  A field with no entry is not the
    clinic's to set; ``recalled_lots`` a clinic may only add to."""

    model_config = FROZEN_STRICT_SHAPE

    numeric: dict[NumericField, NumericBound] = Field(default_factory=dict)
    modes: dict[ModeField, tuple[InterlockMode, ...]] = Field(default_factory=dict)


DEFAULT_CLINIC_BOUNDS: Final = ClinicBounds(
    numeric={
        "heartbeat_interval_s": NumericBound(min=10, max=3600),
        "event_flush_interval_s": NumericBound(min=1, max=60),
        "needle_life_warning_pct": NumericBound(min=50, max=95),
        "needle_life_critical_pct": NumericBound(min=80, max=100),
    },
    modes={
        "cartridge_life_mode": (InterlockMode.WARN, InterlockMode.BLOCK),
        "service_overdue_mode": (InterlockMode.WARN, InterlockMode.BLOCK),
    },
)
"""Until the manufacturer sets bounds of its own."""


class _Data(BaseModel):
    model_config = FROZEN_STRICT_SHAPE

    by: Author


class DeviceConfigChangedData(_Data):
    layer: ConfigLayer
    subject: ShortText | None
    """The model, clinic or device the layer is for (``None`` for the fleet)."""
    settings: LayerSettings
    """The layer from now on (``{}``: the layer sets nothing)."""
    previous: LayerSettings

    @model_validator(mode="after")
    def _subject_fits(self) -> Self:
        if (self.layer is ConfigLayer.FLEET) != (self.subject is None):
            raise ValueError("the fleet layer has no subject; every other layer has one")
        return self


class DeviceConfigBoundsChangedData(_Data):
    bounds: ClinicBounds
    previous: ClinicBounds


class DeviceConfigChanged(EventEnvelope):
    type: Literal["device_config.changed"]
    data: DeviceConfigChangedData


class DeviceConfigBoundsChanged(EventEnvelope):
    type: Literal["device_config_bounds.changed"]
    data: DeviceConfigBoundsChangedData


ConfigChangeModel = DeviceConfigChanged | DeviceConfigBoundsChanged
CONFIG_CHANGE_TYPES: Final = frozenset({"device_config.changed", "device_config_bounds.changed"})
