"""Safety interlocks, decided on the handpiece.

Every reading the firmware (or the simulated handpiece) is about to record passes
through ``Interlocks.admit`` first, which answers with a ``Verdict``: the readings
to record, in order, and whether the asked one is among them.

* ``cartridge.installed`` of a recalled lot is refused: an ``interlock.engaged``
  ``{recalled_lot, block}`` is recorded instead, and the cartridge never becomes
  current.  Trying the same cartridge again is refused without a second event.
* ``session.started`` is refused while the handpiece is locked (by command, or by
  service overdue under ``block``), or while its cartridge is recalled or (under
  ``block``) has used up its rated actuations.
* ``cores.punched`` (one punch window) is refused while locked, or while the
  cartridge is recalled or spent under ``block``.  Service overdue does not stop a
  session under way (stopping a treatment half done serves no patient); it stops
  the next one from starting.
* Under ``warn`` the same causes are recorded once (per cartridge, per service-due
  count) and the reading goes ahead.

Each cause is recorded once when it engages (``interlock.engaged``) and once when
it goes (``interlock.released``): by removing the cartridge, by a configuration that
no longer asks for it (a service recorded moves ``service_due_at_actuations``), by
``unlock``, or by a manufacturer's ``override_interlock``.  Refused attempts in
between record nothing more: what is refused, and why, is in the stream once.

What a refused reading means for the handpiece is the caller's: the firmware holds
its actuator, and the simulated operator swaps a spent or recalled cartridge, or
ends the session when the handpiece is locked.

Pure: no I/O.  Times come from the readings, or for configurations and commands
from the clock the caller gives, so a simulated handpiece decides in simulated time.
"""

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from edge_agent.device import DeviceReading
from edge_agent.interlock_state import CartridgeInUse, Engagement, InterlockState
from schemas.command_events import CommandRejection
from schemas.device_config import DEFAULT_SETTINGS, CommandName, DeviceSettings, InterlockMode
from schemas.interlock_events import CARTRIDGE_INTERLOCKS, Interlock, ReleaseCause

ENGAGED: Final = "interlock.engaged"
RELEASED: Final = "interlock.released"
_SESSION_GATES: Final = (
    Interlock.LOCKED,
    Interlock.SERVICE_OVERDUE,
    Interlock.RECALLED_LOT,
    Interlock.CARTRIDGE_LIFE,
)
_PUNCH_GATES: Final = (Interlock.LOCKED, Interlock.RECALLED_LOT, Interlock.CARTRIDGE_LIFE)
_WORK: Final = frozenset({"session.started", "cores.punched"})
_CONFIGURED: Final = (Interlock.SERVICE_OVERDUE, Interlock.RECALLED_LOT, Interlock.CARTRIDGE_LIFE)
_INTERLOCK_COMMANDS: Final = frozenset(
    {CommandName.LOCK, CommandName.UNLOCK, CommandName.OVERRIDE_INTERLOCK}
)


@dataclass(frozen=True, slots=True)
class Verdict:
    readings: tuple[DeviceReading, ...]
    """What to record, in this order: interlock events and, when admitted, the reading."""
    admitted: bool
    refused_by: Interlock | None = None
    reason: str | None = None
    """Why it was refused, in words the firmware can show."""


@dataclass(frozen=True, slots=True)
class _Judgement:
    mode: InterlockMode
    subject: str | None
    reason: str
    cartridge_id: str | None = None
    lot: str | None = None


class InterlockCommandError(ValueError):
    """A command the interlocks cannot run; ``rejection`` says why, for the answer."""

    def __init__(self, rejection: CommandRejection, detail: str) -> None:
        super().__init__(detail)
        self.rejection = rejection


def _wall_clock() -> datetime:
    return datetime.now(UTC)


class Interlocks:
    """The interlock state of one handpiece and the decisions taken from it."""

    def __init__(
        self,
        settings: DeviceSettings = DEFAULT_SETTINGS,
        *,
        state: InterlockState | None = None,
        clock: Callable[[], datetime] = _wall_clock,
    ) -> None:
        self.settings = settings
        self.state = state or InterlockState()
        self._clock = clock

    # -- what the handpiece asks

    def admit(self, reading: DeviceReading) -> Verdict:
        """Decide on ``reading`` before it is recorded; the state then assumes the
        verdict's readings were recorded (``observe`` is applied to each)."""
        kind = reading.type
        if kind == "cartridge.installed":
            verdict = self._admit_install(reading)
        elif kind in _WORK and self._quiet():
            verdict = Verdict((reading,), admitted=True)
        elif kind == "session.started":
            verdict = self._admit_work(reading, _SESSION_GATES)
        elif kind == "cores.punched":
            verdict = self._admit_work(reading, _PUNCH_GATES)
        elif kind == "cartridge.removed":
            releases = self._releases_of(reading.data["cartridge_id"], reading.occurred_at)
            verdict = Verdict((reading, *releases), admitted=True)
        else:
            verdict = Verdict((reading,), admitted=True)
        for recorded in verdict.readings:
            self.observe(recorded.type, recorded.data)
        if verdict.admitted and kind == "cores.punched":
            # Crossing the service point mid-session is recorded at once (the next
            # session is what it stops), so the platform shows it when it happens.
            after = self._reconcile_engaged(Interlock.SERVICE_OVERDUE, reading.occurred_at)
            if after is not None:
                self.observe(after.type, after.data)
                verdict = Verdict((*verdict.readings, after), admitted=True)
        return verdict

    def actuations_left(self) -> int | None:
        """How many actuations the next punch window may make before a ``block``
        policy stops it mid-window (``None``: no such limit)."""
        cartridge = self.state.cartridge
        if cartridge is None or self.settings.cartridge_life_mode is not InterlockMode.BLOCK:
            return None
        if self.state.overridden.get(Interlock.CARTRIDGE_LIFE) == cartridge.cartridge_id:
            return None
        return cartridge.actuations_left

    def blocking(self) -> tuple[Interlock, ...]:
        """The causes engaged in ``block`` now, in the order they are checked."""
        return tuple(
            cause
            for cause in _SESSION_GATES
            if (held := self.state.engaged.get(cause)) is not None
            and held.mode is InterlockMode.BLOCK
        )

    # -- what the platform asks (configuration and commands)

    def configure(
        self, settings: DeviceSettings, at: datetime | None = None
    ) -> list[DeviceReading]:
        """Enforce ``settings`` from now on: the interlock events this records (a recall
        that covers the installed cartridge engages at once; service recorded releases)."""
        previous_due = self.settings.service_due_at_actuations
        self.settings = settings
        moment = at or self._clock()
        events: list[DeviceReading] = []
        for cause in _CONFIGURED:
            held = self.state.engaged.get(cause)
            judged = self._judge(cause)
            if judged is None and held is not None:
                due = settings.service_due_at_actuations
                serviced = (
                    cause is Interlock.SERVICE_OVERDUE
                    and due is not None
                    and due != previous_due
                    and due > self.state.lifetime_actuations
                )
                by = ReleaseCause.SERVICED if serviced else ReleaseCause.CONFIG
                events.append(_released(cause, by, moment))
            elif judged is not None and _differs(held, judged):
                events.append(_engaged(cause, judged, moment))
        for event in events:
            self.observe(event.type, event.data)
        return events

    def apply_command(
        self, name: str, args: Mapping[str, Any], at: datetime | None = None
    ) -> list[DeviceReading]:
        """Run ``lock``, ``unlock`` or ``override_interlock``; the events to record.

        ``lock`` and ``unlock`` are idempotent (nothing recorded when already so);
        an override names an engaged interlock (``args.interlock``), else it raises
        ``InterlockCommandError`` (``not_applicable``; ``invalid`` for bad args)."""
        moment = at or self._clock()
        if name not in _INTERLOCK_COMMANDS:
            detail = f"{name!r} is not an interlock command (lock, unlock, override_interlock)"
            raise InterlockCommandError(CommandRejection.UNKNOWN, detail)
        events: list[DeviceReading] = []
        if name == CommandName.LOCK:
            if not self.state.locked:
                said = str(args.get("reason") or "")[:200]
                reason = f"locked by command: {said}" if said else "locked by command"
                judged = _Judgement(InterlockMode.BLOCK, None, reason)
                events.append(_engaged(Interlock.LOCKED, judged, moment))
        elif name == CommandName.UNLOCK:
            if self.state.locked:
                events.append(_released(Interlock.LOCKED, ReleaseCause.UNLOCKED, moment))
        else:
            cause = _named_interlock(args)
            if cause not in self.state.engaged:
                detail = f"no {cause.value} interlock is engaged"
                if cause is Interlock.RECALLED_LOT:
                    detail += " (a refused cartridge never became current: nothing to release)"
                raise InterlockCommandError(CommandRejection.NOT_APPLICABLE, detail)
            events.append(_released(cause, ReleaseCause.OVERRIDE, moment))
        for event in events:
            self.observe(event.type, event.data)
        return events

    # -- the fold of what was recorded

    def observe(self, kind: str, data: Mapping[str, Any]) -> None:
        """Account for a recorded event (also when restoring: the events recorded after
        the kept snapshot, replayed in seq order)."""
        state = self.state
        if kind == "cartridge.installed":
            cartridge_id = data["cartridge_id"]
            if state.cartridge is not None:
                state.remember_removed(state.cartridge)
                for cause in CARTRIDGE_INTERLOCKS:
                    state.overridden.pop(cause, None)
            known = state.recent.pop(cartridge_id, None)
            state.cartridge = CartridgeInUse(
                cartridge_id, data["lot"], data["rated_actuations"],
                0 if known is None else known.actuations,
            )  # fmt: skip
        elif kind == "cartridge.removed":
            if state.cartridge is not None and state.cartridge.cartridge_id == data["cartridge_id"]:
                state.remember_removed(state.cartridge)
                state.cartridge = None
            for cause in CARTRIDGE_INTERLOCKS:
                state.overridden.pop(cause, None)
        elif kind == "cores.punched":
            actuations: int = data["actuations"]
            state.lifetime_actuations += actuations
            named = data["cartridge_id"]
            cartridge = state.cartridge
            if cartridge is not None and cartridge.cartridge_id == named:
                cartridge.actuations += actuations
            elif named in state.recent:
                state.recent[named].actuations += actuations
        elif kind == ENGAGED:
            self._observe_engaged(data)
        elif kind == RELEASED:
            cause = Interlock(data["interlock"])
            held = state.engaged.pop(cause, None)
            if data["by"] == ReleaseCause.OVERRIDE and cause is not Interlock.LOCKED:
                state.overridden[cause] = None if held is None else held.subject

    def _observe_engaged(self, data: Mapping[str, Any]) -> None:
        state = self.state
        cause, mode = Interlock(data["interlock"]), InterlockMode(data["mode"])
        cartridge_id = data.get("cartridge_id")
        installed = state.cartridge
        if cause is Interlock.RECALLED_LOT and (
            installed is None
            or (installed.cartridge_id, installed.lot) != (cartridge_id, data.get("lot"))
        ):
            state.remember_refused(str(cartridge_id), str(data.get("lot")))  # at install
            return
        if cause in CARTRIDGE_INTERLOCKS:
            subject = cartridge_id
        elif cause is Interlock.SERVICE_OVERDUE:
            subject = _due_subject(self.settings)
        else:
            subject = None
        state.engaged[cause] = Engagement(mode, subject)

    # -- deciding

    def _admit_install(self, reading: DeviceReading) -> Verdict:
        cartridge_id, lot = reading.data["cartridge_id"], reading.data["lot"]
        if lot not in self.settings.recalled_lots:
            current = self.state.cartridge
            if current is None or (current.cartridge_id, current.lot) == (cartridge_id, lot):
                return Verdict((reading,), admitted=True)
            # Firmware that reports a new cartridge without the old one's removal:
            # the old one's interlocks go with it.
            releases = self._releases_of(current.cartridge_id, reading.occurred_at)
            return Verdict((*releases, reading), admitted=True)
        reason = f"cartridge {cartridge_id}: lot {lot} is recalled"
        held = self.state.engaged.get(Interlock.RECALLED_LOT)
        if (cartridge_id, lot) in self.state.refused or (
            held is not None and held.subject == cartridge_id
        ):
            events: tuple[DeviceReading, ...] = ()  # refused before, recorded then
        else:
            judged = _Judgement(InterlockMode.BLOCK, cartridge_id, reason, cartridge_id, lot)
            events = (_engaged(Interlock.RECALLED_LOT, judged, reading.occurred_at),)
        return Verdict(events, admitted=False, refused_by=Interlock.RECALLED_LOT, reason=reason)

    def _admit_work(self, reading: DeviceReading, gates: Sequence[Interlock]) -> Verdict:
        events: list[DeviceReading] = []
        refusal: tuple[Interlock, str] | None = None
        for cause in gates:
            judged = self._judge(cause)
            if judged is None:
                continue
            if _differs(self.state.engaged.get(cause), judged):
                events.append(_engaged(cause, judged, reading.occurred_at))
            if judged.mode is InterlockMode.BLOCK and refusal is None:
                refusal = (cause, judged.reason)
        if refusal is not None:
            cause, reason = refusal
            return Verdict(tuple(events), admitted=False, refused_by=cause, reason=reason)
        return Verdict((*events, reading), admitted=True)

    def _quiet(self) -> bool:
        """Nothing engaged and no cause holding: the common case, decided without
        judging each cause (a simulated fleet asks this for every punch window)."""
        state, settings, cartridge = self.state, self.settings, self.state.cartridge
        if state.engaged:
            return False
        due = settings.service_due_at_actuations
        if due is not None and state.lifetime_actuations >= due:
            return False
        return cartridge is None or (
            not cartridge.spent and cartridge.lot not in settings.recalled_lots
        )

    def _reconcile_engaged(self, cause: Interlock, moment: datetime) -> DeviceReading | None:
        judged = self._judge(cause)
        if judged is None or not _differs(self.state.engaged.get(cause), judged):
            return None
        return _engaged(cause, judged, moment)

    def _judge(self, cause: Interlock) -> _Judgement | None:
        """The cause as it holds now (mode, subject, why), or ``None``: it does not
        hold, or a manufacturer overrode it for this subject."""
        state, settings = self.state, self.settings
        if cause is Interlock.LOCKED:
            held = state.engaged.get(cause)
            return None if held is None else _Judgement(held.mode, None, "locked by command")
        if cause is Interlock.SERVICE_OVERDUE:
            due = settings.service_due_at_actuations
            if due is None or state.lifetime_actuations < due:
                return None
            subject = str(due)
            reason = (
                f"service was due at {due:,} actuations; the actuator has made "
                f"{state.lifetime_actuations:,}"
            )
            judged = _Judgement(settings.service_overdue_mode, subject, reason)
        else:
            cartridge = state.cartridge
            if cartridge is None:
                return None
            if cause is Interlock.RECALLED_LOT:
                if cartridge.lot not in settings.recalled_lots:
                    return None
                mode, reason = InterlockMode.BLOCK, f"lot {cartridge.lot} is recalled"
            else:
                if not cartridge.spent:
                    return None
                mode = settings.cartridge_life_mode
                reason = (
                    f"cartridge {cartridge.cartridge_id} has made {cartridge.actuations:,} of "
                    f"its {cartridge.rated_actuations:,} rated actuations"
                )
            judged = _Judgement(
                mode, cartridge.cartridge_id, reason, cartridge.cartridge_id, cartridge.lot
            )
        if cause in state.overridden and state.overridden[cause] == judged.subject:
            return None
        return judged

    def _releases_of(self, removed: str, at: datetime) -> list[DeviceReading]:
        return [
            _released(cause, ReleaseCause.CARTRIDGE_REMOVED, at)
            for cause in (Interlock.RECALLED_LOT, Interlock.CARTRIDGE_LIFE)
            if (held := self.state.engaged.get(cause)) is not None and held.subject == removed
        ]


def _differs(held: Engagement | None, judged: _Judgement) -> bool:
    """Whether ``judged`` is news: not engaged yet, or engaged in another mode or for
    another subject (an engagement records the cause anew; it supersedes the last)."""
    return held is None or held.mode is not judged.mode or held.subject != judged.subject


def _due_subject(settings: DeviceSettings) -> str | None:
    due = settings.service_due_at_actuations
    return None if due is None else str(due)


def _named_interlock(args: Mapping[str, Any]) -> Interlock:
    named = args.get("interlock")
    try:
        return Interlock(str(named))
    except ValueError:
        allowed = ", ".join(cause.value for cause in Interlock)
        raise InterlockCommandError(
            CommandRejection.INVALID, f"args.interlock must be one of {allowed}, not {named!r}"
        ) from None


def _engaged(cause: Interlock, judged: _Judgement, at: datetime) -> DeviceReading:
    data = {
        "interlock": cause.value,
        "mode": judged.mode.value,
        "cartridge_id": judged.cartridge_id,
        "lot": judged.lot,
        "reason": judged.reason,
    }
    return DeviceReading(ENGAGED, at, data)


def _released(cause: Interlock, by: ReleaseCause, at: datetime) -> DeviceReading:
    return DeviceReading(RELEASED, at, {"interlock": cause.value, "by": by.value})
