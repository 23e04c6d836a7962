"""The manufacturer's bounds on clinic alert policies: per policy key, the range a
clinic's override must stay within.  Pure: the bounds in force are folded from the
``policy_bounds.changed`` events of ``config:fleet`` (``services.api.policy_changes``).

The defaults forbid settings that would switch an alert off in all but name (a
coverage maximum of 100 %, a needle-life warning at 100 %).  Every range holds DESIGN
§7's default, so a clinic with no override is always within bounds.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final

from services.alerts.policy import DEFAULT_ALERT_POLICY, AlertPolicy, PolicyError

POLICY_KEYS: Final = tuple(
    name for name, field in AlertPolicy.model_fields.items() if field.annotation is not str
)
"""The numeric keys, which bounds can hold (a clinic's time zone has none)."""


@dataclass(frozen=True, slots=True)
class Bound:
    """``low <= value <= high``; ``None``: no limit on that side."""

    low: float | None = None
    high: float | None = None

    def admits(self, value: float) -> bool:
        return (self.low is None or value >= self.low) and (self.high is None or value <= self.high)

    def text(self) -> str:
        if self.low is not None and self.high is not None:
            return f"{_number(self.low)}..{_number(self.high)}"
        if self.high is not None:
            return f"≤ {_number(self.high)}"
        if self.low is not None:
            return f"≥ {_number(self.low)}"
        return "any value"

    def as_document(self) -> dict[str, float | None]:
        return {"min": self.low, "max": self.high}


DEFAULT_BOUNDS: Final[Mapping[str, Bound]] = MappingProxyType(
    {
        "needle_life_low_pct": Bound(50, 95),
        "needle_end_of_life_pct": Bound(80, 100),
        "coverage_max_pct": Bound(1, 20),
        "service_interval": Bound(10_000, 1_000_000),
        "service_due_fraction": Bound(0.5, 1),
        "offline_after_s": Bound(60, 3600),
        "gap_grace_s": Bound(60, 86_400),
    }
)


class BoundsError(ValueError):
    """Bounds that cannot be set; the message names the key and what is wrong."""


def bounds_in_force(set_by_manufacturer: Mapping[str, Bound]) -> dict[str, Bound]:
    """The defaults, with what the manufacturer set in their place."""
    return {**DEFAULT_BOUNDS, **set_by_manufacturer}


def check_bounds(bounds: Mapping[str, Bound]) -> None:
    """Refuse bounds on unknown keys, empty ranges, and ranges that leave out DESIGN
    §7's default (a clinic with no override would then be outside them)."""
    for key, bound in bounds.items():
        if key not in POLICY_KEYS:
            raise BoundsError(f"{key}: not a policy key (one of {', '.join(POLICY_KEYS)})")
        if bound.low is not None and bound.high is not None and bound.low > bound.high:
            raise BoundsError(f"{key}: min {_number(bound.low)} is above max {_number(bound.high)}")
        default = float(getattr(DEFAULT_ALERT_POLICY, key))
        if not bound.admits(default):
            raise BoundsError(
                f"{key}: the bounds {bound.text()} leave out the default {_number(default)}"
            )


def check_overrides(overrides: Mapping[str, Any], bounds: Mapping[str, Bound]) -> AlertPolicy:
    """The policy ``overrides`` make, if every override is a valid policy value within
    ``bounds``; ``PolicyError`` naming the key, the value and the bound otherwise."""
    policy = AlertPolicy.with_overrides(overrides)
    for key, value in overrides.items():
        bound = bounds.get(key)
        if bound is not None and not bound.admits(float(value)):
            raise PolicyError(
                f"{key}: {_number(float(value))} is outside the manufacturer's bounds "
                f"{bound.text()}"
            )
    return policy


def _number(value: float) -> str:
    as_float = float(value)  # bounds given as integers are ints at run time
    return str(int(as_float)) if as_float.is_integer() else str(as_float)
