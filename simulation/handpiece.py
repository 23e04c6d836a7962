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

The handpiece's safety interlocks (``edge_agent.interlocks``, the agent's own) decide
on each install, session start and punch window when its moment comes: the story
yields an ask, ``advance`` takes the decision then (after any configuration or
command that arrived meanwhile) and sends the verdict back.  A refused cartridge is
put aside for another from the box; a spent or recalled one is swapped before the
next window; a locked handpiece ends the session under way and starts none until
released.  Draws happen in the same order whatever is decided, so a story differs
from its unconfigured twin only from the first refusal on.

The numbers aim at a fleet whose dashboards move within a demo: cartridges rated for
a few sessions (so needle-life alerts come regularly), a few faults a day across two
dozen handpieces, and rare sessions over the coverage policy or cartridges run past
their rating, so every alert rule of DESIGN §7 has something to fire on.
"""

import math
import random
from collections import Counter
from collections.abc import Generator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from edge_agent.device import DeviceReading
from edge_agent.interlocks import Interlocks, Verdict
from schemas import Heartbeat, SessionEndReason, Severity
from schemas.interlock_events import CARTRIDGE_INTERLOCKS, Interlock
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


@dataclass(frozen=True, slots=True)
class _Ask:
    """A reading the interlocks decide on at its moment (``Interlocks.admit``)."""

    reading: DeviceReading


_Timed = tuple[int, DeviceReading | Heartbeat | _Ask]
"""An item of the story and its simulated moment (ms since ``start``)."""
_Story = Generator[_Timed, Verdict | None, None]
"""The story and its parts: they yield items and are sent the verdict of each ask."""
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
        self._released_ms = 0
        self._cartridge: Cartridge | None = None
        self.interlocks = Interlocks(clock=self.now)
        """What the handpiece enforces; configurations and interlock commands reach
        it through the fleet's ``edge_agent.control``, dated by ``now``."""
        self._story = self._tell()
        self._answer: Verdict | None = None
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

    def now(self) -> datetime:
        """The simulated present as of the last ``advance``: what events recorded
        between two calls (a configuration applied, a command answered) are dated,
        so the device's times never run backwards."""
        return self._clock.at(self._released_ms)

    def advance(self, until: datetime) -> list[DeviceReading | Heartbeat]:
        """Everything reported after the previous call, up to and including ``until``,
        in time order (events and heartbeats interleaved)."""
        limit = self._clock.moment(until)
        released: list[DeviceReading | Heartbeat] = []
        while True:
            if self._pending is None:
                self._pending = self._story.send(self._answer)
                self._answer = None
            moment, item = self._pending
            if moment > limit:
                break
            self._pending = None
            if isinstance(item, Heartbeat):
                released.append(item)
                self._heartbeats_released += 1
                continue
            # Every reading passes the interlocks, so they see each install, removal
            # and punch; the story waits for the verdict only on what it asked.
            verdict = self.interlocks.admit(item.reading if isinstance(item, _Ask) else item)
            if isinstance(item, _Ask):
                self._answer = verdict
            for reading in verdict.readings:
                released.append(reading)
                self._kinds[reading.type] += 1
        self._released_ms = max(self._released_ms, limit)
        return released

    # The story.  State that heartbeats read (``in_session``, ``overheated``,
    # ``booted_ms`` of ``self._heartbeats``) changes only after the event that
    # changes it has been yielded: heartbeats due before an event are yielded ahead
    # of it and must see the state as it was until then.

    def _tell(self) -> _Story:
        rng = self._rng
        yield from self._boot(0)
        yield from self._install(draw_int(rng, 1_000, 5_000))
        # A uniform first gap spreads a fleet started together across the first hour.
        first_gap_ms = max(30_000, round(self._profile.mean_idle_gap_s * 1000))
        moment = self._now_ms + draw_int(rng, 30_000, first_gap_ms)
        while True:
            yield from self._session(moment)
            moment = self._now_ms + idle_gap_ms(rng, self._profile)

    def _at(self, moment: int, kind: str, data: dict[str, Any]) -> _Story:
        heartbeats = self._heartbeats
        while heartbeats.next_due_ms <= moment:
            yield heartbeats.take_due()
        self._now_ms = moment
        yield moment, DeviceReading(kind, self._clock.at(moment), data)

    def _ask(
        self, moment: int, kind: str, data: dict[str, Any]
    ) -> Generator[_Timed, Verdict | None, Verdict]:
        """Like ``_at``, for a reading the interlocks decide on: their verdict."""
        heartbeats = self._heartbeats
        while heartbeats.next_due_ms <= moment:
            yield heartbeats.take_due()
        self._now_ms = moment
        verdict = yield moment, _Ask(DeviceReading(kind, self._clock.at(moment), data))
        if verdict is None:  # pragma: no cover - advance answers every ask
            raise RuntimeError("an ask went unanswered")
        return verdict

    def _boot(self, moment: int) -> _Story:
        boot_id = draw_boot_id(self._rng)
        booted_ms = moment - draw_int(self._rng, 5_000, 20_000)
        data = {
            "firmware_version": self._firmware_version,
            "agent_version": self._profile.agent_version,
            "boot_id": boot_id,
        }
        yield from self._at(moment, "agent.started", data)
        self._heartbeats.booted_ms = booted_ms

    def _install(self, moment: int) -> _Story:
        while True:
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
            verdict = yield from self._ask(moment, "cartridge.installed", data)
            if verdict.admitted:
                self._cartridge = cartridge
                return
            # Refused (a recalled lot): the operator takes another from the box.
            moment = self._now_ms + draw_int(self._rng, 20_000, 60_000)

    def _session(self, moment: int) -> _Story:
        session, area = plan_session(self._rng, self._profile, self._installed.model, moment)
        data = {
            "session_id": session.session_id,
            "treatment_area": area.value,
            "area_cm2": session.area_cm2,
            "operator_ref": self._rng.choice(self._operators),
            "cartridge_id": self._installed.cartridge_id,
        }
        verdict = yield from self._ask(moment, "session.started", data)
        if not verdict.admitted:
            if verdict.refused_by in CARTRIDGE_INTERLOCKS:
                # A spent or recalled cartridge: swapped, then the session begins.
                yield from self._swap(self._now_ms + draw_int(self._rng, 15_000, 45_000),
                                      _removal_reason(verdict.refused_by))  # fmt: skip
                yield from self._session(self._now_ms + draw_int(self._rng, 10_000, 30_000))
            return  # locked: no session until released
        self._heartbeats.in_session = True
        reason: SessionEndReason | None = None
        while reason is None:
            reason = yield from self._burst(session)
        yield from self._end_session(session, reason)

    def _burst(
        self, session: Session
    ) -> Generator[_Timed, Verdict | None, SessionEndReason | None]:
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
            refused_by = yield from self._window(session, depth)
            if refused_by is not None and refused_by not in CARTRIDGE_INTERLOCKS:
                return SessionEndReason.ABORTED  # locked mid-session
            if refused_by is not None:
                # The actuator stopped at the cartridge's limit: the operator swaps
                # it and carries on with the same session.
                yield from self._swap(self._now_ms + draw_int(rng, 15_000, 45_000),
                                      _removal_reason(refused_by))  # fmt: skip
                session.cursor_ms = self._now_ms + draw_int(rng, 10_000, 30_000)
                continue
            if session.removed_mm2 >= session.abort_at_mm2:
                return SessionEndReason.ABORTED
            if session.removed_mm2 >= session.target_mm2:
                return SessionEndReason.COMPLETED
            session.cursor_ms += draw_int(rng, *GAP_IN_BURST_MS)
        session.cursor_ms += pause_ms(rng, session, self._installed.model)
        return None

    def _window(
        self, session: Session, depth: float
    ) -> Generator[_Timed, Verdict | None, Interlock | None]:
        """One punch window; the interlock that refused it, or ``None``."""
        rng, cartridge = self._rng, self._installed
        model = cartridge.model
        remaining_mm2 = session.target_mm2 - session.removed_mm2
        needed = math.ceil(remaining_mm2 / (model.core_area_mm2 * model.needles))
        length = draw_int(rng, *WINDOW_MS)
        actuations = max(1, min(needed, round(session.rate_hz * length / 1000)))
        left = self.interlocks.actuations_left()
        if left:  # under ``block`` the actuator stops at the cartridge's rating
            actuations = min(actuations, left)
        cores = actuations * model.needles
        start = session.cursor_ms
        end = start + length
        reported = end + draw_int(rng, *REPORT_LATENCY_MS)
        data = {
            "session_id": session.session_id,
            "cartridge_id": cartridge.cartridge_id,
            "actuations": actuations,
            "cores": cores,
            "depth_mm": depth,
            "window_start": self._clock.text(start),
            "window_end": self._clock.text(end),
        }
        verdict = yield from self._ask(reported, "cores.punched", data)
        session.cursor_ms = reported
        if not verdict.admitted:
            return verdict.refused_by
        cartridge.actuations += actuations
        session.actuations += actuations
        session.cores += cores
        session.removed_mm2 += cores * model.core_area_mm2
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
        return None

    def _wear_report(self, moment: int) -> _Story:
        cartridge = self._installed
        data = {
            "cartridge_id": cartridge.cartridge_id,
            "actuations_total": cartridge.actuations,
            "wear_pct": round(cartridge.wear_pct(), 1),
            "insertion_force_n": round(cartridge.insertion_force_n(), 2),
        }
        yield from self._at(moment, "needle.wear", data)

    def _swap(self, moment: int, reason: str) -> _Story:
        cartridge = self._installed
        data = {
            "cartridge_id": cartridge.cartridge_id,
            "actuations_total": cartridge.actuations,
            "reason": reason,
        }
        yield from self._at(moment, "cartridge.removed", data)
        self._cartridge = None
        yield from self._install(moment + draw_int(self._rng, 20_000, 90_000))

    def _end_session(self, session: Session, reason: SessionEndReason) -> _Story:
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

    def _fault(self, session: Session) -> Generator[_Timed, Verdict | None, bool]:
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

    def _recover(self, fault: FaultModel) -> _Story:
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


def _removal_reason(refused_by: Interlock | None) -> str:
    return "worn" if refused_by is Interlock.CARTRIDGE_LIFE else "other"
