"""Needle cartridges: what one is rated for and how much of its life is used.

Life used is ``max(actuations / rated_actuations, wear_pct / 100)`` (DESIGN §2): the
count and the device's wear measurement each bound the life, and the worse one wins.
"""

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any


def life_used_pct(actuations: int, rated_actuations: int, wear_pct: float | None) -> float:
    """Percent of a cartridge's life used; above 100 once it runs past its rating."""
    # Multiplying before dividing keeps 412/1000 at exactly 41.2 rather than 41.199….
    by_count = actuations * 100 / rated_actuations
    return by_count if wear_pct is None or wear_pct < by_count else wear_pct


def life_reached(
    actuations: int, rated_actuations: int, wear_pct: float | None, threshold_pct: float
) -> bool:
    """Whether life used is at least ``threshold_pct``, decided without rounding error.

    Thresholds are alert boundaries ("at 80 %"), so 800 of 1000 must count as reached
    however the division would round; integers times a float threshold compare exactly.
    """
    if actuations * 100 >= threshold_pct * rated_actuations:
        return True
    return wear_pct is not None and wear_pct >= threshold_pct


def actuations_left(actuations: int, rated_actuations: int, wear_pct: float | None) -> int:
    """Actuations before life used reaches 100 %, never below zero.

    Wear counts too: a cartridge whose needles read 90 % worn has a tenth of its
    rating left, however few actuations it has done.
    """
    left = rated_actuations - actuations
    if wear_pct is not None:
        # Rounded first: a float a hair under a whole number must floor to that number.
        by_wear = math.floor(round(rated_actuations * (100 - wear_pct) / 100, 6))
        left = min(left, by_wear)
    return max(left, 0)


@dataclass(frozen=True, slots=True)
class InstalledCartridge:
    """The read model of the cartridge in a handpiece."""

    cartridge_id: str
    lot: str
    needles: int
    needle_gauge: int
    core_diameter_mm: float
    rated_actuations: int
    installed_at: datetime
    actuations: int
    """Counted from ``cores.punched`` naming this cartridge while it was installed."""
    wear_pct: float | None
    """The latest ``needle.wear`` reading; ``None`` until the first one."""
    insertion_force_n: float | None
    reported_actuations: int | None
    """The device's own count at its latest ``needle.wear`` report."""
    life_used_pct: float
    over_rating: bool


@dataclass(slots=True)
class CartridgeTally:
    """A cartridge as the fold keeps it (mutable: owned by one ``DeviceProjection``)."""

    cartridge_id: str
    lot: str
    needles: int
    needle_gauge: int
    core_diameter_mm: float
    rated_actuations: int
    installed_at: datetime
    core_area_mm2: float
    """π(d/2)², the skin one needle removes per actuation."""
    actuations: int = 0
    wear_pct: float | None = None
    insertion_force_n: float | None = None
    reported_actuations: int | None = None

    @classmethod
    def from_installed(cls, data: dict[str, Any], installed_at: datetime) -> "CartridgeTally":
        diameter = data["core_diameter_mm"]
        return cls(
            cartridge_id=data["cartridge_id"],
            lot=data["lot"],
            needles=data["needles"],
            needle_gauge=data["needle_gauge"],
            core_diameter_mm=diameter,
            rated_actuations=data["rated_actuations"],
            installed_at=installed_at,
            core_area_mm2=math.pi * (diameter / 2) ** 2,
        )

    def carry_use_from(self, earlier: "CartridgeTally") -> None:
        """Continue the use of the same cartridge installed before: put back after a
        removal, its needles keep the actuations and wear they already have."""
        self.actuations = earlier.actuations
        self.wear_pct = earlier.wear_pct
        self.insertion_force_n = earlier.insertion_force_n
        self.reported_actuations = earlier.reported_actuations

    def life_used_pct(self) -> float:
        return life_used_pct(self.actuations, self.rated_actuations, self.wear_pct)

    def view(self) -> InstalledCartridge:
        return InstalledCartridge(
            cartridge_id=self.cartridge_id,
            lot=self.lot,
            needles=self.needles,
            needle_gauge=self.needle_gauge,
            core_diameter_mm=self.core_diameter_mm,
            rated_actuations=self.rated_actuations,
            installed_at=self.installed_at,
            actuations=self.actuations,
            wear_pct=self.wear_pct,
            insertion_force_n=self.insertion_force_n,
            reported_actuations=self.reported_actuations,
            life_used_pct=self.life_used_pct(),
            over_rating=self.actuations > self.rated_actuations,
        )
