"""Faults a simulated handpiece raises: when the next one strikes, what it is, and how
long the firmware holds the actuator for one that does not end the session."""

import math
import random
from dataclasses import dataclass

from schemas import Severity
from simulation.catalog import FaultModel, pick_fault_model
from simulation.clock import MS_PER_HOUR
from simulation.draws import draw_int


@dataclass(frozen=True, slots=True)
class RaisedFault:
    model: FaultModel
    severity: Severity
    message: str


def draw_fault(rng: random.Random, needles: int) -> RaisedFault:
    """The fault raised at a punch, with ``needles`` of the installed cartridge."""
    model = pick_fault_model(rng)
    severities = [severity for severity, _ in model.severities]
    weights = [weight for _, weight in model.severities]
    severity = rng.choices(severities, weights=weights)[0]
    message = model.message.format(level=rng.uniform(*model.level), needles=needles)
    return RaisedFault(model, severity, message)


def fault_delay_ms(rng: random.Random, faults_per_hour: float) -> float:
    """Session time until the next fault; infinite when faults are switched off."""
    # Faults are a Poisson process in session time; drawing afresh each session
    # is exact because the exponential distribution is memoryless.
    return rng.expovariate(faults_per_hour) * MS_PER_HOUR if faults_per_hour > 0 else math.inf


def hold_ms(rng: random.Random, severity: Severity) -> int:
    """How long the firmware holds the actuator until a non-critical fault clears."""
    held = (5_000, 30_000) if severity is Severity.INFO else (20_000, 180_000)
    return draw_int(rng, *held)
