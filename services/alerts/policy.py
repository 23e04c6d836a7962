"""Alert thresholds: DESIGN §7's defaults, which a clinic's policy may override."""

from collections.abc import Mapping
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from schemas import describe
from services.projections.maintenance import MaintenancePolicy


def known_zone(name: str) -> bool:
    """Whether ``name`` is a zone of the IANA database (``zoneinfo``'s)."""
    if name != name.strip() or ".." in name or name.startswith("/"):
        return False  # zoneinfo reads names as paths
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


class PolicyError(ValueError):
    """A policy override that cannot work; the message names the field."""


class AlertPolicy(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    needle_life_low_pct: float = Field(80.0, gt=0, le=100)
    needle_end_of_life_pct: float = Field(95.0, gt=0, le=100)
    coverage_max_pct: float = Field(8.0, gt=0, le=100)
    service_interval: int = Field(250_000, ge=1)
    service_due_fraction: float = Field(0.9, gt=0, le=1)
    offline_after_s: float = Field(300.0, gt=0)
    """No message for this long while a session is open: ``device_offline``."""
    gap_grace_s: float = Field(600.0, gt=0)
    """How long events may wait behind a gap before it counts (``integrity``) and a
    session ended behind it is reconciled with what arrived."""
    time_zone: str = Field("UTC", min_length=1, max_length=64)
    """The IANA zone the clinic's dashboard shows times in (``Europe/Berlin``)."""

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, name: str) -> str:
        if not known_zone(name):
            raise ValueError(f"{name!r} is not an IANA time zone (e.g. Europe/Berlin)")
        return name

    def maintenance(self) -> MaintenancePolicy:
        return MaintenancePolicy(
            cartridge_low_pct=self.needle_life_low_pct,
            cartridge_exhausted_pct=self.needle_end_of_life_pct,
            service_interval=self.service_interval,
            service_due_fraction=self.service_due_fraction,
        )

    @classmethod
    def with_overrides(cls, overrides: Mapping[str, Any]) -> "AlertPolicy":
        try:
            return cls(**overrides)
        except ValidationError as error:
            raise PolicyError(describe(error)) from None


DEFAULT_ALERT_POLICY = AlertPolicy()
