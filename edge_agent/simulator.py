"""A handpiece simulator behind the device port: the story a clinic handpiece tells.

The agent starts, a needle cartridge is installed, and treatment sessions follow with
idle gaps between them: punching in short bursts, needle wear reported as the
cartridge ages, worn cartridges swapped, and now and then a fault.

Pure and deterministic.  Time is simulated (integer milliseconds since ``start``,
never the wall clock) and every draw comes from one ``random.Random`` seeded with the
seed and the device id, so a device's story does not depend on how many devices run
beside it, and a fleet replays event for event.  The story is a generator that
``advance`` pulls from, one reading ahead at most, so calling ``advance`` in many
small steps or one big one yields the very same readings.

The numbers aim at a fleet whose dashboards move within a demo: cartridges rated for
a few sessions (so needle-life alerts come regularly), a few faults a day across two
dozen handpieces, and rare sessions over the coverage policy or cartridges run past
their rating, so every alert rule of DESIGN §7 has something to fire on.
"""

import math
import random
import uuid
from collections import Counter
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from edge_agent.device import DeviceReading
from edge_agent.simulator_catalog import (
    CartridgeModel,
    FaultModel,
    pick_area_model,
    pick_cartridge_model,
    pick_fault_model,
)
from schemas import Heartbeat, SessionEndReason, Severity, TreatmentArea

_Timed = tuple[int, DeviceReading | Heartbeat]
"""An item of the story and its simulated moment (ms since ``start``)."""

_MS_PER_HOUR: Final = 3_600_000
_UNIX_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MS_PER_DAY: Final = 86_400_000
_HOURS_TEXT: Final = [f"{hour:02d}:" for hour in range(24)]
_SIXTY_TEXT: Final = [f"{number:02d}" for number in range(60)]
_MILLIS_TEXT: Final = [f"{millis:03d}Z" for millis in range(1000)]
_WINDOW_MS: Final = (1_000, 2_000)
_GAP_IN_BURST_MS: Final = (150, 800)
_REPORT_LATENCY_MS: Final = (5, 60)
_WINDOWS_PER_BURST: Final = (4, 12)
_MEAN_WINDOW_CYCLE_MS: Final = 1_500 + 475 + 32
"""A window, the gap after it within a burst and the report latency, on average."""
_MEAN_WINDOWS_PER_BURST: Final = 8
_MIN_PAUSE_MS: Final = 2_000
_BATTERY_DRAIN_PCT_PER_HOUR: Final = 35.0
_BATTERY_CHARGE_PCT_PER_HOUR: Final = 60.0
_OVERHEATED_C: Final = 54.0


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


def _draw(rng: random.Random, low: int, high: int) -> int:
    """A uniform integer in [low, high]: ``randint`` without its argument checks,
    which cost more than the draw on the punch path."""
    return low + int(rng.random() * (high - low + 1))


@dataclass(slots=True)
class _Cartridge:
    cartridge_id: str
    model: CartridgeModel
    wear_at_rating_pct: float
    """Wear at exactly the rated actuations: lots differ, some reach 100 % early."""
    force_when_new_n: float
    retire_at_life_used: float
    """Above 1 for a cartridge the clinic keeps using past its rating."""
    next_wear_report: int
    actuations: int = 0

    def wear_pct(self) -> float:
        # Running-in wear first (the needle edge dulls quickly), then a slowly
        # accelerating curve, so wear is monotone and reaches 100 near the rating.
        used = self.actuations / self.model.rated_actuations
        curve = 0.1 * (1.0 - math.exp(-20.0 * used)) + 0.9 * used * math.sqrt(used)
        return min(100.0, self.wear_at_rating_pct * curve)

    def life_used(self) -> float:
        return max(self.actuations / self.model.rated_actuations, self.wear_pct() / 100)


@dataclass(slots=True)
class _Session:
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


class HandpieceSimulator:
    """One simulated handpiece; ``advance`` returns what it reported meanwhile."""

    def __init__(
        self,
        device_id: str,
        seed: int,
        start: datetime,
        profile: SimulatorProfile = SimulatorProfile(),
    ) -> None:
        if start.tzinfo is None:
            raise ValueError("start must be timezone-aware")
        start = start.astimezone(UTC)
        self._device_id = device_id
        self._profile = profile
        # Event timestamps carry milliseconds; a whole-millisecond epoch keeps each
        # reading's ``occurred_at`` identical to the text hashed in its data.
        self._epoch = start.replace(microsecond=start.microsecond // 1000 * 1000)
        self._epoch_unix_ms = (self._epoch - _UNIX_EPOCH) // timedelta(milliseconds=1)
        self._text_day = -1
        self._text_date = ""
        self._rng = random.Random(f"{seed}:{device_id}")  # noqa: S311 - reproducible, not secret
        rng = self._rng
        # Telemetry draws come from their own generator, so tuning heartbeats never
        # changes a device's event story.
        self._telemetry_rng = random.Random(rng.getrandbits(64))  # noqa: S311
        versions = [version for version, _ in profile.firmware_versions]
        weights = [weight for _, weight in profile.firmware_versions]
        self._firmware_version = rng.choices(versions, weights=weights)[0]
        self._preferred_model = pick_cartridge_model(rng)
        self._operators = [f"op-{rng.getrandbits(24):06x}" for _ in range(_draw(rng, 2, 4))]
        self._heartbeat_ms = max(1, round(profile.heartbeat_interval_s * 1000))
        self._next_heartbeat_ms = _draw(rng, 1_000, max(1_000, self._heartbeat_ms))
        self._ambient_c = rng.uniform(21.0, 26.0)
        self._temperature_c = self._ambient_c + 1.0
        self._battery_pct = rng.uniform(60.0, 100.0)
        self._rssi_base_dbm = rng.uniform(-82.0, -48.0)
        self._boot_ms = 0
        self._in_session = False
        self._overheated = False
        self._now_ms = 0
        self._cartridge: _Cartridge | None = None
        self._story = self._tell()
        self._pending: _Timed | None = None
        self._kinds: Counter[str] = Counter()
        self._heartbeats = 0

    @property
    def device_id(self) -> str:
        return self._device_id

    @property
    def counters(self) -> SimulatorCounters:
        """Counts of what ``advance`` has handed out so far."""
        return SimulatorCounters(
            events=self._kinds.total(),
            heartbeats=self._heartbeats,
            sessions=self._kinds["session.started"],
            cartridges=self._kinds["cartridge.installed"],
            faults=self._kinds["fault.raised"],
        )

    def advance(self, until: datetime) -> list[DeviceReading | Heartbeat]:
        """Everything reported after the previous call, up to and including ``until``,
        in time order (events and heartbeats interleaved)."""
        limit = (until - self._epoch) // timedelta(milliseconds=1)
        released: list[DeviceReading | Heartbeat] = []
        while True:
            if self._pending is None:
                self._pending = next(self._story)
            moment, item = self._pending
            if moment > limit:
                break
            released.append(item)
            self._pending = None
            if isinstance(item, DeviceReading):
                self._kinds[item.type] += 1
            else:
                self._heartbeats += 1
        return released

    # The story.  State that heartbeats read (``_in_session``, ``_overheated``,
    # ``_boot_ms``) changes only after the event that changes it has been yielded:
    # heartbeats due before an event are yielded ahead of it and must see the state
    # as it was until then.

    def _tell(self) -> Iterator[_Timed]:
        rng = self._rng
        yield from self._boot(0)
        yield from self._install(_draw(rng, 1_000, 5_000))
        # A uniform first gap spreads a fleet started together across the first hour.
        first_gap_ms = max(30_000, round(self._profile.mean_idle_gap_s * 1000))
        moment = self._now_ms + _draw(rng, 30_000, first_gap_ms)
        while True:
            yield from self._session(moment)
            moment = self._now_ms + self._idle_gap_ms()

    def _at(self, moment: int, kind: str, data: dict[str, Any]) -> Iterator[_Timed]:
        while self._next_heartbeat_ms <= moment:
            due = self._next_heartbeat_ms
            yield due, self._heartbeat(due)
            self._next_heartbeat_ms += self._heartbeat_ms
        self._now_ms = moment
        yield moment, DeviceReading(kind, self._datetime(moment), data)

    def _boot(self, moment: int) -> Iterator[_Timed]:
        boot_id = f"b-{self._rng.getrandbits(48):012x}"
        booted_ms = moment - _draw(self._rng, 5_000, 20_000)
        data = {
            "firmware_version": self._firmware_version,
            "agent_version": self._profile.agent_version,
            "boot_id": boot_id,
        }
        yield from self._at(moment, "agent.started", data)
        self._boot_ms = booted_ms

    def _install(self, moment: int) -> Iterator[_Timed]:
        rng = self._rng
        model = self._preferred_model if rng.random() < 0.85 else pick_cartridge_model(rng)
        overused = rng.random() < self._profile.cartridge_overuse_probability
        cartridge = _Cartridge(
            cartridge_id=f"CT-{rng.getrandbits(40):010X}",
            model=model,
            wear_at_rating_pct=rng.uniform(90.0, 112.0),
            force_when_new_n=rng.uniform(1.9, 2.5),
            retire_at_life_used=(
                rng.uniform(1.05, 1.3) if overused else self._profile.swap_at_life_used
            ),
            next_wear_report=self._profile.wear_report_every,
        )
        made = self._epoch - timedelta(days=_draw(rng, 20, 150))
        data = {
            "cartridge_id": cartridge.cartridge_id,
            "lot": f"L{made:%y%m}{rng.choice('ABCD')}",
            "needles": model.needles,
            "needle_gauge": model.needle_gauge,
            "core_diameter_mm": model.core_diameter_mm,
            "rated_actuations": model.rated_actuations,
        }
        yield from self._at(moment, "cartridge.installed", data)
        self._cartridge = cartridge

    def _session(self, moment: int) -> Iterator[_Timed]:
        session, area = self._plan_session(moment)
        data = {
            "session_id": session.session_id,
            "treatment_area": area.value,
            "area_cm2": session.area_cm2,
            "operator_ref": self._rng.choice(self._operators),
            "cartridge_id": self._installed.cartridge_id,
        }
        yield from self._at(moment, "session.started", data)
        self._in_session = True
        reason: SessionEndReason | None = None
        while reason is None:
            reason = yield from self._burst(session)
        yield from self._end_session(session, reason)

    def _plan_session(self, moment: int) -> tuple[_Session, TreatmentArea]:
        rng, profile = self._rng, self._profile
        area = pick_area_model(rng)
        area_cm2 = round(rng.uniform(*area.area_cm2), 1)
        target_mm2 = self._target_coverage_pct() / 100 * area_cm2 * 100
        rate_hz = rng.uniform(5.0, 8.0)
        lead_in, tail = _draw(rng, 30_000, 120_000), _draw(rng, 60_000, 180_000)
        low, mode, high = profile.session_minutes
        planned = round(rng.triangular(low, high, mode) * 60_000)
        # A large area at high coverage needs more time than the plan: the session
        # runs longer rather than punching faster than the actuator can.
        busy = self._busy_ms(target_mm2, rate_hz)
        planned = max(planned, round(lead_in + 1.1 * busy + tail))
        aborted = rng.random() < profile.abort_probability
        session = _Session(
            session_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
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
            next_fault_ms=moment + self._fault_delay_ms(),
        )
        return session, area.area

    def _target_coverage_pct(self) -> float:
        rng, profile = self._rng, self._profile
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

    def _busy_ms(self, remaining_mm2: float, rate_hz: float) -> float:
        """Time the remaining punching takes, at the installed cartridge's needles."""
        model = self._installed.model
        actuations = remaining_mm2 / (model.core_area_mm2 * model.needles)
        return actuations / (rate_hz * 1.5) * _MEAN_WINDOW_CYCLE_MS

    def _burst(self, session: _Session) -> Generator[_Timed, None, SessionEndReason | None]:
        """One pass over part of the area: a few punch windows in quick succession."""
        rng = self._rng
        depth = session.depth_mm
        if rng.random() < 0.3:
            low, high = session.depth_range
            depth = round(min(max(depth + rng.choice((-0.2, -0.1, 0.1, 0.2)), low), high), 1)
        for _ in range(_draw(rng, *_WINDOWS_PER_BURST)):
            if session.next_fault_ms <= session.cursor_ms:
                interrupted = yield from self._fault(session)
                if interrupted:
                    return SessionEndReason.FAULT
            yield from self._window(session, depth)
            if session.removed_mm2 >= session.abort_at_mm2:
                return SessionEndReason.ABORTED
            if session.removed_mm2 >= session.target_mm2:
                return SessionEndReason.COMPLETED
            session.cursor_ms += _draw(rng, *_GAP_IN_BURST_MS)
        session.cursor_ms += self._pause_ms(session)
        return None

    def _pause_ms(self, session: _Session) -> int:
        """The pause after a pass: the slack left in the plan, shared among the passes
        still to come, so the last pass lands near the plan's end."""
        busy = self._busy_ms(session.target_mm2 - session.removed_mm2, session.rate_hz)
        slack = session.last_punch_by_ms - session.cursor_ms - busy
        passes_left = max(1.0, busy / (_MEAN_WINDOWS_PER_BURST * _MEAN_WINDOW_CYCLE_MS))
        # Never more than the whole slack: passes are counted roughly, and one pause
        # too long would push the session past its plan.
        share = min(slack, slack / passes_left * self._rng.uniform(0.5, 1.5))
        return max(_MIN_PAUSE_MS, round(share))

    def _window(self, session: _Session, depth: float) -> Iterator[_Timed]:
        rng, cartridge = self._rng, self._installed
        model = cartridge.model
        remaining_mm2 = session.target_mm2 - session.removed_mm2
        needed = math.ceil(remaining_mm2 / (model.core_area_mm2 * model.needles))
        length = _draw(rng, *_WINDOW_MS)
        actuations = max(1, min(needed, round(session.rate_hz * length / 1000)))
        cores = actuations * model.needles
        start = session.cursor_ms
        end = start + length
        reported = end + _draw(rng, *_REPORT_LATENCY_MS)
        cartridge.actuations += actuations
        session.actuations += actuations
        session.cores += cores
        session.removed_mm2 += cores * model.core_area_mm2
        data = {
            "session_id": session.session_id,
            "cartridge_id": cartridge.cartridge_id,
            "actuations": actuations,
            "cores": cores,
            "depth_mm": depth,
            "window_start": self._text(start),
            "window_end": self._text(end),
        }
        yield from self._at(reported, "cores.punched", data)
        session.cursor_ms = reported
        reported_wear = cartridge.actuations >= cartridge.next_wear_report
        if reported_wear:
            yield from self._wear_report(reported)
            while cartridge.next_wear_report <= cartridge.actuations:
                cartridge.next_wear_report += self._profile.wear_report_every
        if cartridge.life_used() >= cartridge.retire_at_life_used:
            # The handpiece prompts for a fresh cartridge; the operator swaps it and
            # carries on with the same session.
            if not reported_wear:
                yield from self._wear_report(reported)
            yield from self._swap(reported + _draw(rng, 15_000, 45_000), "worn")
            session.cursor_ms = self._now_ms + _draw(rng, 10_000, 30_000)

    def _wear_report(self, moment: int) -> Iterator[_Timed]:
        cartridge = self._installed
        wear = cartridge.wear_pct()
        force = cartridge.force_when_new_n * (1.0 + 1.5 * (wear / 100) ** 2)
        data = {
            "cartridge_id": cartridge.cartridge_id,
            "actuations_total": cartridge.actuations,
            "wear_pct": round(wear, 1),
            "insertion_force_n": round(force, 2),
        }
        yield from self._at(moment, "needle.wear", data)

    def _swap(self, moment: int, reason: str) -> Iterator[_Timed]:
        cartridge = self._installed
        data = {
            "cartridge_id": cartridge.cartridge_id,
            "actuations_total": cartridge.actuations,
            "reason": reason,
        }
        yield from self._at(moment, "cartridge.removed", data)
        self._cartridge = None
        yield from self._install(moment + _draw(self._rng, 20_000, 90_000))

    def _end_session(self, session: _Session, reason: SessionEndReason) -> Iterator[_Timed]:
        rng = self._rng
        if reason is SessionEndReason.COMPLETED:
            ended = max(session.planned_end_ms, self._now_ms + _draw(rng, 30_000, 90_000))
        else:
            ended = self._now_ms + _draw(rng, 2_000, 30_000)
        yield from self._wear_report(ended)
        data = {
            "session_id": session.session_id,
            "actuations_total": session.actuations,
            "cores_total": session.cores,
            "duration_s": (ended - session.started_ms) / 1000,
            "reason": reason.value,
        }
        yield from self._at(ended, "session.ended", data)
        self._in_session = False
        if session.fault is not None:
            yield from self._recover(session.fault)
        cartridge = self._installed
        if cartridge.life_used() >= cartridge.retire_at_life_used:
            yield from self._swap(self._now_ms + _draw(rng, 30_000, 120_000), "worn")

    def _fault(self, session: _Session) -> Generator[_Timed, None, bool]:
        """Raise a fault at the next punch; True when it ends the session."""
        rng = self._rng
        fault = pick_fault_model(rng)
        severities = [severity for severity, _ in fault.severities]
        weights = [weight for _, weight in fault.severities]
        severity = rng.choices(severities, weights=weights)[0]
        message = fault.message.format(
            level=rng.uniform(*fault.level), needles=self._installed.model.needles
        )
        data = {"fault_code": fault.code, "severity": severity.value, "message": message}
        raised = session.cursor_ms
        yield from self._at(raised, "fault.raised", data)
        self._overheated = fault.code == "E-OVERTEMP"
        if severity is Severity.CRITICAL:
            session.fault = fault
            return True
        # The firmware holds the actuator until the condition clears, then the
        # operator resumes the same session.
        held = (5_000, 30_000) if severity is Severity.INFO else (20_000, 180_000)
        cleared = raised + _draw(rng, *held)
        yield from self._at(cleared, "fault.cleared", {"fault_code": fault.code})
        self._overheated = False
        session.cursor_ms = cleared + _draw(rng, 2_000, 10_000)
        session.next_fault_ms = session.cursor_ms + self._fault_delay_ms()
        return False

    def _recover(self, fault: FaultModel) -> Iterator[_Timed]:
        """After a critical fault ended the session: service the cause, then clear."""
        rng = self._rng
        if fault.code == "E-NEEDLE-JAM":
            yield from self._swap(self._now_ms + _draw(rng, 60_000, 180_000), "fault")
            cleared = self._now_ms + _draw(rng, 5_000, 20_000)
        elif fault.code == "E-MOTOR-STALL":
            yield from self._boot(self._now_ms + _draw(rng, 20_000, 60_000))
            cleared = self._now_ms + _draw(rng, 10_000, 30_000)
        elif fault.code == "E-OVERTEMP":
            cleared = self._now_ms + _draw(rng, 300_000, 900_000)
        else:
            cleared = self._now_ms + _draw(rng, 60_000, 300_000)
        yield from self._at(cleared, "fault.cleared", {"fault_code": fault.code})
        self._overheated = False

    def _fault_delay_ms(self) -> float:
        # Faults are a Poisson process in session time; drawing afresh each session
        # is exact because the exponential distribution is memoryless.
        rate = self._profile.faults_per_punching_hour
        return self._rng.expovariate(rate) * _MS_PER_HOUR if rate > 0 else math.inf

    def _idle_gap_ms(self) -> int:
        profile = self._profile
        spread = profile.mean_idle_gap_s - profile.min_idle_gap_s
        return round((profile.min_idle_gap_s + self._rng.expovariate(1 / spread)) * 1000)

    def _heartbeat(self, moment: int) -> Heartbeat:
        rng = self._telemetry_rng
        hours = self._heartbeat_ms / _MS_PER_HOUR
        # Sessions run on battery; between them the handpiece sits in its charging dock.
        if self._in_session:
            self._battery_pct = max(0.0, self._battery_pct - _BATTERY_DRAIN_PCT_PER_HOUR * hours)
            target_c = self._ambient_c + 11.0
        else:
            charged = self._battery_pct + _BATTERY_CHARGE_PCT_PER_HOUR * hours
            self._battery_pct = min(100.0, charged)
            target_c = self._ambient_c + 1.5
        if self._overheated:
            target_c = _OVERHEATED_C
        self._temperature_c += (target_c - self._temperature_c) * 0.3 + rng.gauss(0.0, 0.15)
        rssi = min(-30.0, max(-120.0, self._rssi_base_dbm + rng.gauss(0.0, 2.5)))
        return Heartbeat.model_validate(
            {
                "device_id": self._device_id,
                "sampled_at": self._text(moment),
                "battery_pct": round(self._battery_pct, 1),
                "temperature_c": round(self._temperature_c, 1),
                "uptime_s": max(0, (moment - self._boot_ms) // 1000),
                "rssi_dbm": round(rssi, 1),
            }
        )

    @property
    def _installed(self) -> _Cartridge:
        if self._cartridge is None:  # pragma: no cover - the story always installs first
            raise RuntimeError("no cartridge installed")
        return self._cartridge

    def _datetime(self, moment: int) -> datetime:
        return self._epoch + timedelta(milliseconds=moment)

    def _text(self, moment: int) -> str:
        # Formatting a datetime would be most of the cost of a punch report; moments
        # come in time order, so only the date is formatted, once a day, and the time
        # of day is put together from small tables.
        day, within = divmod(self._epoch_unix_ms + moment, _MS_PER_DAY)
        if day != self._text_day:
            self._text_day = day
            self._text_date = f"{datetime.fromtimestamp(day * 86_400, UTC):%Y-%m-%d}T"
        hours, within = divmod(within, _MS_PER_HOUR)
        minutes, within = divmod(within, 60_000)
        seconds, millis = divmod(within, 1000)
        return (
            f"{self._text_date}{_HOURS_TEXT[hours]}{_SIXTY_TEXT[minutes]}:"
            f"{_SIXTY_TEXT[seconds]}.{_MILLIS_TEXT[millis]}"
        )


def fleet_device_ids(count: int, first: int = 1) -> list[str]:
    """Serials of a simulated fleet: ``HP-000001``, ``HP-000002``, …"""
    if count < 0 or first < 0:
        raise ValueError("count and first must not be negative")
    return [f"HP-{number:06d}" for number in range(first, first + count)]
