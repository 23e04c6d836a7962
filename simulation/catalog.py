"""What the handpiece simulator draws from: the needle cartridges clinics install, the
treatment areas they work on and the faults a handpiece raises, each with the weight
it is picked by.

Static and pure: the simulator's story decides when to draw, this module only what
there is to draw from.  The ``pick_*`` functions consume exactly one
``random.Random.choices`` draw, so a seeded story replays unchanged whichever module
holds the tables.
"""

import math
import random
from dataclasses import dataclass
from typing import Final

from schemas import Severity, TreatmentArea


@dataclass(frozen=True, slots=True)
class CartridgeModel:
    needles: int
    needle_gauge: int
    core_diameter_mm: float
    rated_actuations: int
    weight: float

    @property
    def core_area_mm2(self) -> float:
        return math.pi * (self.core_diameter_mm / 2) ** 2


# Ratings are low enough that a cartridge lasts three to five sessions of average size.
CARTRIDGE_MODELS: Final = (
    CartridgeModel(5, 22, 0.5, 2_000, 0.4),
    CartridgeModel(3, 22, 0.5, 3_000, 0.2),
    CartridgeModel(7, 22, 0.5, 1_500, 0.2),
    CartridgeModel(5, 24, 0.4, 2_500, 0.1),
    CartridgeModel(3, 20, 0.6, 2_000, 0.1),
)


@dataclass(frozen=True, slots=True)
class AreaModel:
    area: TreatmentArea
    weight: float
    area_cm2: tuple[float, float]
    depth_mm: tuple[float, float]
    """Thin skin (around the eyes) is cored shallow, thighs and arms deep."""


AREA_MODELS: Final = (
    AreaModel(TreatmentArea.LOWER_FACE, 0.24, (40.0, 80.0), (1.5, 2.5)),
    AreaModel(TreatmentArea.MID_FACE, 0.18, (50.0, 90.0), (1.5, 2.5)),
    AreaModel(TreatmentArea.NECK, 0.14, (80.0, 150.0), (1.0, 2.0)),
    AreaModel(TreatmentArea.SUBMENTAL, 0.10, (25.0, 50.0), (1.5, 2.5)),
    AreaModel(TreatmentArea.PERIORBITAL, 0.10, (8.0, 20.0), (0.5, 1.0)),
    AreaModel(TreatmentArea.UPPER_ARM, 0.10, (120.0, 250.0), (2.0, 3.0)),
    AreaModel(TreatmentArea.INNER_THIGH, 0.08, (150.0, 350.0), (2.0, 3.5)),
    AreaModel(TreatmentArea.OTHER, 0.06, (20.0, 200.0), (1.0, 3.0)),
)


@dataclass(frozen=True, slots=True)
class FaultModel:
    code: str
    weight: float
    severities: tuple[tuple[Severity, float], ...]
    level: tuple[float, float]
    """The range of the reading that tripped the fault, in the message's unit."""
    message: str
    """Formatted with ``level`` and ``needles`` (of the installed cartridge)."""


FAULT_MODELS: Final = (
    FaultModel(
        "E-VAC-LOW",
        0.35,
        ((Severity.INFO, 0.3), (Severity.WARNING, 0.6), (Severity.CRITICAL, 0.1)),
        (32.0, 55.0),
        "aspiration vacuum at {level:.0f} kPa, below the 60 kPa setpoint; check tubing",
    ),
    FaultModel(
        "E-MOTOR-STALL",
        0.15,
        ((Severity.WARNING, 0.4), (Severity.CRITICAL, 0.6)),
        (0.4, 3.2),
        "actuator stalled at {level:.1f} mm of stroke; drive current limited",
    ),
    FaultModel(
        "E-NEEDLE-JAM",
        0.2,
        ((Severity.WARNING, 0.5), (Severity.CRITICAL, 0.5)),
        (0.0, 0.0),
        "a needle of {needles} did not retract within 40 ms",
    ),
    FaultModel(
        "E-DEPTH-SENSOR",
        0.15,
        ((Severity.INFO, 0.5), (Severity.WARNING, 0.5)),
        (0.3, 1.2),
        "depth sensor reads {level:.1f} mm off its calibration; holding last good value",
    ),
    FaultModel(
        "E-OVERTEMP",
        0.15,
        ((Severity.WARNING, 0.7), (Severity.CRITICAL, 0.3)),
        (48.5, 58.0),
        "actuator at {level:.0f} degC, above its 48 degC limit; cooling down",
    ),
)


def _cumulative(weights: list[float]) -> list[float]:
    total, running = 0.0, []
    for weight in weights:
        total += weight
        running.append(total)
    return running


# Cumulative weights, summed once: ``choices`` would otherwise sum them on every pick.
_CARTRIDGE_CUM: Final = _cumulative([model.weight for model in CARTRIDGE_MODELS])
_AREA_CUM: Final = _cumulative([model.weight for model in AREA_MODELS])
_FAULT_CUM: Final = _cumulative([model.weight for model in FAULT_MODELS])


def pick_cartridge_model(rng: random.Random) -> CartridgeModel:
    return rng.choices(CARTRIDGE_MODELS, cum_weights=_CARTRIDGE_CUM)[0]


def pick_area_model(rng: random.Random) -> AreaModel:
    return rng.choices(AREA_MODELS, cum_weights=_AREA_CUM)[0]


def pick_fault_model(rng: random.Random) -> FaultModel:
    return rng.choices(FAULT_MODELS, cum_weights=_FAULT_CUM)[0]
