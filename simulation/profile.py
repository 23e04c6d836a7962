"""What a simulated fleet is tuned by, and what a simulated handpiece has told so far."""

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SimulatorProfile:
    """Tunables of a simulated fleet; the defaults look like a busy set of clinics."""

    faults_per_punching_hour: float = 0.015
    """Faults per hour a handpiece spends in sessions: about four a day across 24."""
    cartridge_overuse_probability: float = 0.03
    """Chance that a clinic keeps using a cartridge past its rating."""
    coverage_overshoot_probability: float = 0.025
    """Chance that a session goes past the coverage policy maximum."""
    mean_coverage_pct: float = 5.0
    coverage_spread_pct: float = 1.0
    coverage_policy_max_pct: float = 8.0
    abort_probability: float = 0.01
    """Chance that the operator stops a session early (reason ``aborted``)."""
    session_minutes: tuple[float, float, float] = (20.0, 30.0, 45.0)
    """Shortest, most common and longest planned session."""
    min_idle_gap_s: float = 180.0
    mean_idle_gap_s: float = 2_400.0
    heartbeat_interval_s: float = 60.0
    wear_report_every: int = 250
    """A ``needle.wear`` report every this many actuations on a cartridge."""
    swap_at_life_used: float = 0.95
    firmware_versions: tuple[tuple[str, float], ...] = (
        ("2.4.1", 0.7),
        ("2.3.7", 0.25),
        ("2.2.0", 0.05),
    )
    """Firmware releases in the field and the share of devices running each."""
    agent_version: str = "1.0.0"

    def __post_init__(self) -> None:
        probabilities = (
            self.cartridge_overuse_probability,
            self.coverage_overshoot_probability,
            self.abort_probability,
        )
        if not all(0.0 <= p <= 1.0 for p in probabilities):
            raise ValueError("probabilities must lie in [0, 1]")
        if self.faults_per_punching_hour < 0:
            raise ValueError("faults_per_punching_hour must not be negative")
        if not 0 < self.mean_coverage_pct < self.coverage_policy_max_pct:
            raise ValueError("mean_coverage_pct must lie between 0 and the policy maximum")
        if self.coverage_spread_pct < 0:
            raise ValueError("coverage_spread_pct must not be negative")
        low, mode, high = self.session_minutes
        if not 0 < low <= mode <= high:
            raise ValueError("session_minutes must be (shortest, most common, longest) > 0")
        if not 0 <= self.min_idle_gap_s < self.mean_idle_gap_s:
            raise ValueError("mean_idle_gap_s must exceed min_idle_gap_s >= 0")
        if self.heartbeat_interval_s <= 0 or self.wear_report_every < 1:
            raise ValueError("heartbeat_interval_s and wear_report_every must be positive")
        if not 0 < self.swap_at_life_used <= 1:
            raise ValueError("swap_at_life_used must lie in (0, 1]")
        if not self.firmware_versions or any(w <= 0 for _, w in self.firmware_versions):
            raise ValueError("firmware_versions needs at least one release, weights > 0")


@dataclass(frozen=True, slots=True)
class SimulatorCounters:
    """What a simulated handpiece has reported so far."""

    events: int
    heartbeats: int
    sessions: int
    cartridges: int
    faults: int
