"""A treatment session on a simulated handpiece: how it is planned, the pace of its
punching, and the idle gap before the next one."""

import math
import random
from dataclasses import dataclass
from typing import Final

from schemas import TreatmentArea
from simulation.catalog import CartridgeModel, FaultModel, pick_area_model
from simulation.draws import draw_int
from simulation.faults import fault_delay_ms
from simulation.ids import draw_session_id
from simulation.profile import SimulatorProfile

WINDOW_MS: Final = (1_000, 2_000)
GAP_IN_BURST_MS: Final = (150, 800)
REPORT_LATENCY_MS: Final = (5, 60)
WINDOWS_PER_BURST: Final = (4, 12)
_MEAN_WINDOW_CYCLE_MS: Final = 1_500 + 475 + 32
"""A window, the gap after it within a burst and the report latency, on average."""
_MEAN_WINDOWS_PER_BURST: Final = 8
_MIN_PAUSE_MS: Final = 2_000


@dataclass(slots=True)
class Session:
    session_id: str
    area_cm2: float
    depth_mm: float
    depth_range: tuple[float, float]
    rate_hz: float
    started_ms: int
    planned_end_ms: int
    last_punch_by_ms: int
    target_mm2: float
    abort_at_mm2: float
    cursor_ms: int
    """When the handpiece is next ready to punch."""
    next_fault_ms: float
    removed_mm2: float = 0.0
    actuations: int = 0
    cores: int = 0
    fault: FaultModel | None = None


def plan_session(
    rng: random.Random, profile: SimulatorProfile, model: CartridgeModel, moment: int
) -> tuple[Session, TreatmentArea]:
    """The session starting at ``moment`` with cartridges of ``model``, and its area."""
    area = pick_area_model(rng)
    area_cm2 = round(rng.uniform(*area.area_cm2), 1)
    target_mm2 = _target_coverage_pct(rng, profile) / 100 * area_cm2 * 100
    rate_hz = rng.uniform(5.0, 8.0)
    lead_in, tail = draw_int(rng, 30_000, 120_000), draw_int(rng, 60_000, 180_000)
    low, mode, high = profile.session_minutes
    planned = round(rng.triangular(low, high, mode) * 60_000)
    # A large area at high coverage needs more time than the plan: the session
    # runs longer rather than punching faster than the actuator can.
    busy = _busy_ms(model, target_mm2, rate_hz)
    planned = max(planned, round(lead_in + 1.1 * busy + tail))
    aborted = rng.random() < profile.abort_probability
    session = Session(
        session_id=draw_session_id(rng),
        area_cm2=area_cm2,
        depth_mm=round(rng.uniform(*area.depth_mm), 1),
        depth_range=area.depth_mm,
        rate_hz=rate_hz,
        started_ms=moment,
        planned_end_ms=moment + planned,
        last_punch_by_ms=moment + planned - tail,
        target_mm2=target_mm2,
        abort_at_mm2=target_mm2 * rng.uniform(0.15, 0.7) if aborted else math.inf,
        cursor_ms=moment + lead_in,
        next_fault_ms=moment + fault_delay_ms(rng, profile.faults_per_punching_hour),
    )
    return session, area.area


def _target_coverage_pct(rng: random.Random, profile: SimulatorProfile) -> float:
    policy = profile.coverage_policy_max_pct
    if rng.random() < profile.coverage_overshoot_probability:
        return rng.uniform(1.04 * policy, 1.5 * policy)
    # Kept below the policy: the last window may add a few cores beyond the target,
    # and only deliberate overshoots should trip the coverage alert.  Redrawing
    # (rather than clamping) keeps the distribution free of a spike at the cap.
    low, high = 1.5, 0.92 * policy
    drawn = rng.gauss(profile.mean_coverage_pct, profile.coverage_spread_pct)
    for _ in range(20):
        if low <= drawn <= high:
            break
        drawn = rng.gauss(profile.mean_coverage_pct, profile.coverage_spread_pct)
    return min(max(drawn, low), high)


def _busy_ms(model: CartridgeModel, remaining_mm2: float, rate_hz: float) -> float:
    """Time the remaining punching takes with cartridges of ``model``."""
    actuations = remaining_mm2 / (model.core_area_mm2 * model.needles)
    return actuations / (rate_hz * 1.5) * _MEAN_WINDOW_CYCLE_MS


def pause_ms(rng: random.Random, session: Session, model: CartridgeModel) -> int:
    """The pause after a pass: the slack left in the plan, shared among the passes
    still to come, so the last pass lands near the plan's end."""
    busy = _busy_ms(model, session.target_mm2 - session.removed_mm2, session.rate_hz)
    slack = session.last_punch_by_ms - session.cursor_ms - busy
    passes_left = max(1.0, busy / (_MEAN_WINDOWS_PER_BURST * _MEAN_WINDOW_CYCLE_MS))
    # Never more than the whole slack: passes are counted roughly, and one pause
    # too long would push the session past its plan.
    share = min(slack, slack / passes_left * rng.uniform(0.5, 1.5))
    return max(_MIN_PAUSE_MS, round(share))


def idle_gap_ms(rng: random.Random, profile: SimulatorProfile) -> int:
    """The handpiece idle in its dock between one session and the next."""
    spread = profile.mean_idle_gap_s - profile.min_idle_gap_s
    return round((profile.min_idle_gap_s + rng.expovariate(1 / spread)) * 1000)
