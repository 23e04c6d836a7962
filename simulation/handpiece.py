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

The story's parts live beside it (``cartridge``, ``session``, ``faults``,
``heartbeat``, ``ids``): each draws from the generator it is handed when it is called,
so the order of the calls here fixes the order of the draws, and with it every
recorded story.  Reorder a call and every seeded fleet tells a different story.

The numbers aim at a fleet whose dashboards move within a demo: cartridges rated for
a few sessions (so needle-life alerts come regularly), a few faults a day across two
dozen handpieces, and rare sessions over the coverage policy or cartridges run past
their rating, so every alert rule of DESIGN §7 has something to fire on.
"""

import math
import random
from collections import Counter
from collections.abc import Generator, Iterator
from datetime import datetime
from typing import Any, Final

from edge_agent.device import DeviceReading
from schemas import Heartbeat, SessionEndReason, Severity
from simulation.cartridge import Cartridge, draw_cartridge
from simulation.catalog import FaultModel, pick_cartridge_model
from simulation.clock import SimulatedClock
from simulation.draws import draw_int
from simulation.faults import draw_fault, fault_delay_ms, hold_ms
from simulation.heartbeat import HeartbeatSource
from simulation.ids import draw_boot_id, draw_operator_ref
from simulation.profile import SimulatorCounters, SimulatorProfile
from simulation.session import (
    GAP_IN_BURST_MS,
    REPORT_LATENCY_MS,
    WINDOW_MS,
    WINDOWS_PER_BURST,
    Session,
    idle_gap_ms,
    pause_ms,
    plan_session,
)

_Timed = tuple[int, DeviceReading | Heartbeat]
"""An item of the story and its simulated moment (ms since ``start``)."""
_DEFAULT_PROFILE: Final = SimulatorProfile()


class HandpieceSimulator:
    """One simulated handpiece; ``advance`` returns what it reported meanwhile."""

    def __init__(
        self,
        device_id: str,
        seed: int,
        start: datetime,
        profile: SimulatorProfile = _DEFAULT_PROFILE,
    ) -> None:
        self._clock = SimulatedClock(start)
        self._device_id = device_id
        self._profile = profile
        self._rng = random.Random(f"{seed}:{device_id}")  # noqa: S311 - reproducible, not secret
        rng = self._rng
        # The draws below come in the order the seeded stories were recorded with.
        telemetry_seed = rng.getrandbits(64)
        versions = [version for version, _ in profile.firmware_versions]
        weights = [weight for _, weight in profile.firmware_versions]
        self._firmware_version = rng.choices(versions, weights=weights)[0]
        self._preferred_model = pick_cartridge_model(rng)
        self._operators = [draw_operator_ref(rng) for _ in range(draw_int(rng, 2, 4))]
        self._heartbeats = HeartbeatSource(
            device_id, self._clock, profile.heartbeat_interval_s, rng, telemetry_seed
        )
        self._now_ms = 0
        self._cartridge: Cartridge | None = None
        self._story = self._tell()
        self._pending: _Timed | None = None
        self._kinds: Counter[str] = Counter()
        self._heartbeats_released = 0

    @property
    def device_id(self) -> str:
        return self._device_id

    @property
    def counters(self) -> SimulatorCounters:
        """Counts of what ``advance`` has handed out so far."""
        return SimulatorCounters(
            events=self._kinds.total(),
            heartbeats=self._heartbeats_released,
            sessions=self._kinds["session.started"],
            cartridges=self._kinds["cartridge.installed"],
            faults=self._kinds["fault.raised"],
        )

    def advance(self, until: datetime) -> list[DeviceReading | Heartbeat]:
        """Everything reported after the previous call, up to and including ``until``,
        in time order (events and heartbeats interleaved)."""
        limit = self._clock.moment(until)
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
                self._heartbeats_released += 1
        return released

    # The story.  State that heartbeats read (``in_session``, ``overheated``,
    # ``booted_ms`` of ``self._heartbeats``) changes only after the event that
    # changes it has been yielded: heartbeats due before an event are yielded ahead
    # of it and must see the state as it was until then.

    def _tell(self) -> Iterator[_Timed]:
        rng = self._rng
        yield from self._boot(0)
        yield from self._install(draw_int(rng, 1_000, 5_000))
        # A uniform first gap spreads a fleet started together across the first hour.
        first_gap_ms = max(30_000, round(self._profile.mean_idle_gap_s * 1000))
        moment = self._now_ms + draw_int(rng, 30_000, first_gap_ms)
        while True:
            yield from self._session(moment)
            moment = self._now_ms + idle_gap_ms(rng, self._profile)

    def _at(self, moment: int, kind: str, data: dict[str, Any]) -> Iterator[_Timed]:
        heartbeats = self._heartbeats
        while heartbeats.next_due_ms <= moment:
            yield heartbeats.take_due()
        self._now_ms = moment
        yield moment, DeviceReading(kind, self._clock.at(moment), data)

    def _boot(self, moment: int) -> Iterator[_Timed]:
        boot_id = draw_boot_id(self._rng)
        booted_ms = moment - draw_int(self._rng, 5_000, 20_000)
        data = {
            "firmware_version": self._firmware_version,
            "agent_version": self._profile.agent_version,
            "boot_id": boot_id,
        }
        yield from self._at(moment, "agent.started", data)
        self._heartbeats.booted_ms = booted_ms

    def _install(self, moment: int) -> Iterator[_Timed]:
        cartridge = draw_cartridge(
            self._rng, self._preferred_model, self._profile, self._clock.epoch
        )
        model = cartridge.model
        data = {
            "cartridge_id": cartridge.cartridge_id,
            "lot": cartridge.lot,
            "needles": model.needles,
            "needle_gauge": model.needle_gauge,
            "core_diameter_mm": model.core_diameter_mm,
            "rated_actuations": model.rated_actuations,
        }
        yield from self._at(moment, "cartridge.installed", data)
        self._cartridge = cartridge

    def _session(self, moment: int) -> Iterator[_Timed]:
        session, area = plan_session(self._rng, self._profile, self._installed.model, moment)
        data = {
            "session_id": session.session_id,
            "treatment_area": area.value,
            "area_cm2": session.area_cm2,
            "operator_ref": self._rng.choice(self._operators),
            "cartridge_id": self._installed.cartridge_id,
        }
        yield from self._at(moment, "session.started", data)
        self._heartbeats.in_session = True
        reason: SessionEndReason | None = None
        while reason is None:
            reason = yield from self._burst(session)
        yield from self._end_session(session, reason)

    def _burst(self, session: Session) -> Generator[_Timed, None, SessionEndReason | None]:
        """One pass over part of the area: a few punch windows in quick succession."""
        rng = self._rng
        depth = session.depth_mm
        if rng.random() < 0.3:
            low, high = session.depth_range
            depth = round(min(max(depth + rng.choice((-0.2, -0.1, 0.1, 0.2)), low), high), 1)
        for _ in range(draw_int(rng, *WINDOWS_PER_BURST)):
            if session.next_fault_ms <= session.cursor_ms:
                interrupted = yield from self._fault(session)
                if interrupted:
                    return SessionEndReason.FAULT
            yield from self._window(session, depth)
            if session.removed_mm2 >= session.abort_at_mm2:
                return SessionEndReason.ABORTED
            if session.removed_mm2 >= session.target_mm2:
                return SessionEndReason.COMPLETED
            session.cursor_ms += draw_int(rng, *GAP_IN_BURST_MS)
        session.cursor_ms += pause_ms(rng, session, self._installed.model)
        return None

    def _window(self, session: Session, depth: float) -> Iterator[_Timed]:
        rng, cartridge = self._rng, self._installed
        model = cartridge.model
        remaining_mm2 = session.target_mm2 - session.removed_mm2
        needed = math.ceil(remaining_mm2 / (model.core_area_mm2 * model.needles))
        length = draw_int(rng, *WINDOW_MS)
        actuations = max(1, min(needed, round(session.rate_hz * length / 1000)))
        cores = actuations * model.needles
        start = session.cursor_ms
        end = start + length
        reported = end + draw_int(rng, *REPORT_LATENCY_MS)
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
            "window_start": self._clock.text(start),
            "window_end": self._clock.text(end),
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
            yield from self._swap(reported + draw_int(rng, 15_000, 45_000), "worn")
            session.cursor_ms = self._now_ms + draw_int(rng, 10_000, 30_000)

    def _wear_report(self, moment: int) -> Iterator[_Timed]:
        cartridge = self._installed
        data = {
            "cartridge_id": cartridge.cartridge_id,
            "actuations_total": cartridge.actuations,
            "wear_pct": round(cartridge.wear_pct(), 1),
            "insertion_force_n": round(cartridge.insertion_force_n(), 2),
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
        yield from self._install(moment + draw_int(self._rng, 20_000, 90_000))

    def _end_session(self, session: Session, reason: SessionEndReason) -> Iterator[_Timed]:
        rng = self._rng
        if reason is SessionEndReason.COMPLETED:
            ended = max(session.planned_end_ms, self._now_ms + draw_int(rng, 30_000, 90_000))
        else:
            ended = self._now_ms + draw_int(rng, 2_000, 30_000)
        yield from self._wear_report(ended)
        data = {
            "session_id": session.session_id,
            "actuations_total": session.actuations,
            "cores_total": session.cores,
            "duration_s": (ended - session.started_ms) / 1000,
            "reason": reason.value,
        }
        yield from self._at(ended, "session.ended", data)
        self._heartbeats.in_session = False
        if session.fault is not None:
            yield from self._recover(session.fault)
        cartridge = self._installed
        if cartridge.life_used() >= cartridge.retire_at_life_used:
            yield from self._swap(self._now_ms + draw_int(rng, 30_000, 120_000), "worn")

    def _fault(self, session: Session) -> Generator[_Timed, None, bool]:
        """Raise a fault at the next punch; True when it ends the session."""
        rng = self._rng
        raised_fault = draw_fault(rng, self._installed.model.needles)
        fault, severity = raised_fault.model, raised_fault.severity
        data = {
            "fault_code": fault.code,
            "severity": severity.value,
            "message": raised_fault.message,
        }
        raised = session.cursor_ms
        yield from self._at(raised, "fault.raised", data)
        self._heartbeats.overheated = fault.code == "E-OVERTEMP"
        if severity is Severity.CRITICAL:
            session.fault = fault
            return True
        # The firmware holds the actuator until the condition clears, then the
        # operator resumes the same session.
        cleared = raised + hold_ms(rng, severity)
        yield from self._at(cleared, "fault.cleared", {"fault_code": fault.code})
        self._heartbeats.overheated = False
        session.cursor_ms = cleared + draw_int(rng, 2_000, 10_000)
        rate = self._profile.faults_per_punching_hour
        session.next_fault_ms = session.cursor_ms + fault_delay_ms(rng, rate)
        return False

    def _recover(self, fault: FaultModel) -> Iterator[_Timed]:
        """After a critical fault ended the session: service the cause, then clear."""
        rng = self._rng
        if fault.code == "E-NEEDLE-JAM":
            yield from self._swap(self._now_ms + draw_int(rng, 60_000, 180_000), "fault")
            cleared = self._now_ms + draw_int(rng, 5_000, 20_000)
        elif fault.code == "E-MOTOR-STALL":
            yield from self._boot(self._now_ms + draw_int(rng, 20_000, 60_000))
            cleared = self._now_ms + draw_int(rng, 10_000, 30_000)
        elif fault.code == "E-OVERTEMP":
            cleared = self._now_ms + draw_int(rng, 300_000, 900_000)
        else:
            cleared = self._now_ms + draw_int(rng, 60_000, 300_000)
        yield from self._at(cleared, "fault.cleared", {"fault_code": fault.code})
        self._heartbeats.overheated = False

    @property
    def _installed(self) -> Cartridge:
        if self._cartridge is None:  # pragma: no cover - the story always installs first
            raise RuntimeError("no cartridge installed")
        return self._cartridge
