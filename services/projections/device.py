"""One handpiece's state, folded from its own event stream (DESIGN §6).

Order.  Events may arrive in any order and more than once (MQTT redelivery, resent
ranges, replays from the store), yet the state must be exactly what in-order
delivery gives.  So the fold applies facts strictly by ``seq``: a fact at or below
``applied_through`` is a redelivery and is ignored; one beyond the next expected seq
waits in ``pending`` until the gap before it fills.  Seqs are dense per device
(DESIGN §4), so "the next one" is always known and the state after applying seq N is
a function of events 1..N alone.  Last-seen times are maxima, which do not depend on
order, so they are taken from every fact on arrival.

Device time.  A handpiece's clock can be wrong (DESIGN §4), so a device time that is
implausible (``facts.clock_skewed``) is counted, not believed: every time this state
holds is the device's own when plausible and the platform's receive time otherwise
(``facts.event_time``), so a year-9999 event neither becomes the device's last
activity nor a fault's raised time.

Mutation.  ``DeviceProjection`` is changed in place by ``apply`` rather than copied
per event: a replay folds tens of thousands of events a second and a copy of the
state per event would cost more than the fold.  Nothing outside it holds its
internals; readers get immutable values (``summary``, ``session_audit``) and the
list of ``Change`` values each ``apply`` returns.  It does no I/O and reads no
clock, so the same facts always give the same state.
"""

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime

from schemas import GENESIS_HASH, ChainStatus, Severity
from services.projections.cartridge import CartridgeTally, actuations_left
from services.projections.changes import (
    Applied,
    Change,
    FaultClosed,
    FaultOpened,
    FindingRecorded,
    SessionChanged,
    SessionClosed,
)
from services.projections.device_summary import DeviceSummary
from services.projections.errors import ProjectionError
from services.projections.facts import (
    CLOCK_FLOOR,
    CLOCK_SKEW_TOLERANCE,
    Fact,
    clock_skewed,
    event_time,
)
from services.projections.faults import OpenFault
from services.projections.findings import Finding, FindingKind
from services.projections.forecast import NeedleLifeForecast, PunchRate, forecast_needle_life
from services.projections.interlocks import InterlockTally
from services.projections.maintenance import (
    DEFAULT_POLICY,
    MaintenancePolicy,
    MaintenanceStatus,
    headline_status,
    maintenance_attention,
)
from services.projections.session import SessionAudit, SessionTally

RECENT_CARTRIDGES = 8
"""Cartridges remembered after removal: enough to resume one put back and to judge a
punch naming one just taken out, without a device's whole history in memory."""


@dataclass(slots=True)
class DeviceProjection:
    """The fold of one device's stream.  Read its fields; change it only by ``apply``
    and ``record_service``."""

    device_id: str
    applied_through: int = 0
    last_hash: str = GENESIS_HASH
    firmware_version: str | None = None
    agent_version: str | None = None
    boot_id: str | None = None
    last_occurred_at: datetime | None = None
    last_received_at: datetime | None = None
    cartridge: CartridgeTally | None = None
    """The installed cartridge, ``None`` between a removal and the next install."""
    lifetime_actuations: int = 0
    lifetime_cores: int = 0
    lifetime_sessions: int = 0
    actuations_at_service: int = 0
    last_serviced_at: datetime | None = None
    open_faults: dict[str, OpenFault] = field(default_factory=dict)
    open_session: SessionTally | None = None
    sessions: dict[str, SessionTally] = field(default_factory=dict)
    """Every session folded and not yet forgotten, in the order they started."""
    findings: list[Finding] = field(default_factory=list)
    chain_broken_at: int | None = None
    """The first seq whose ``prev_hash`` failed; everything from it on is unverified."""
    punch_rate: PunchRate = field(default_factory=PunchRate)
    recent_cartridges: dict[str, CartridgeTally] = field(default_factory=dict)
    pending: dict[int, Fact] = field(default_factory=dict)
    """Facts beyond a gap, by seq, waiting for the missing ones."""
    clock_skew_events: int = 0
    """Folded facts whose device time is implausible (``facts.clock_skewed``)."""
    last_clock_skew_seq: int | None = None
    integrity_alerts: set[str] = field(default_factory=set)
    """Open integrity incidents over events the store refused, by alert id (platform
    facts from the alerts' streams, see ``integrity_incident_opened``)."""
    interlocks: InterlockTally = field(default_factory=InterlockTally)
    """What the handpiece's safety interlocks recorded (``projections.interlocks``)."""

    # --- folding

    def apply(self, fact: Fact) -> list[Change]:
        """Fold ``fact`` and any facts it unblocks; return what changed, in order.

        An empty list means nothing was folded: ``fact`` was a redelivery or now waits
        behind a gap.  Raises ``ProjectionError`` only for another device's fact.
        """
        if fact.device_id != self.device_id:
            raise ProjectionError(
                f"the projection of {self.device_id} was given seq {fact.seq} of {fact.device_id}"
            )
        skewed = self._see(fact)
        changes: list[Change] = []
        seq = fact.seq
        if seq != self.applied_through + 1:
            if seq > self.applied_through:
                # The store holds one version of each seq, so a second copy of a waiting
                # fact is a redelivery of the same bytes: the first one stays.
                self.pending.setdefault(seq, fact)
            return changes
        self._fold(fact, changes, skewed)
        pending = self.pending
        while pending:
            waiting = pending.pop(self.applied_through + 1, None)
            if waiting is None:
                break
            self._fold(waiting, changes, clock_skewed(waiting))
        return changes

    def apply_all(self, facts: Iterable[Fact]) -> list[Change]:
        """``apply`` each fact in turn; the changes of all of them."""
        changes: list[Change] = []
        for fact in facts:
            changes += self.apply(fact)
        return changes

    def record_service(
        self, serviced_at: datetime, actuations_at_service: int | None = None
    ) -> bool:
        """A service visit (a ``device.serviced`` platform event): the actuator's count
        since service starts again from ``actuations_at_service``.

        Visits live in the device's registry stream, not its own, so a replay may fold
        them before or after the punches around them; the visit's own count keeps the
        result independent of that.  ``None`` means "as of the facts folded so far",
        right only when folding live.  A visit older than the latest one is ignored
        and returns ``False``.
        """
        if self.last_serviced_at is not None and serviced_at < self.last_serviced_at:
            return False
        self.last_serviced_at = serviced_at
        self.actuations_at_service = (
            self.lifetime_actuations if actuations_at_service is None else actuations_at_service
        )
        return True

    def integrity_incident_opened(self, alert_id: str) -> bool:
        """An integrity alert over events the store refused was raised (an
        ``alert.raised`` in the alert's own stream): the device shows ``integrity``
        until it is resolved.  ``False`` when it was known already (a repeat raise
        updating it, or a redelivery)."""
        if alert_id in self.integrity_alerts:
            return False
        self.integrity_alerts.add(alert_id)
        return True

    def integrity_incident_resolved(self, alert_id: str) -> bool:
        """An ``alert.resolved``: ``True`` when it closed one of the device's open
        integrity incidents.

        An incident is raised by the alert engine from the store's dead letters and
        resolved by a person, so its raise always precedes its resolution in the
        global order: folding both in that order, as live and replay do, leaves the
        same set.
        """
        if alert_id not in self.integrity_alerts:
            return False
        self.integrity_alerts.discard(alert_id)
        return True

    def forget_ended_sessions(self) -> list[SessionAudit]:
        """Drop ended sessions from memory, returning their final audits.

        Nothing folded later can change an ended session (see ``session``), so a runner
        that has stored the audits keeps memory bounded by calling this.
        """
        ended = [tally for tally in self.sessions.values() if tally.ended_seq is not None]
        for tally in ended:
            del self.sessions[tally.session_id]
        return [tally.audit(self.device_id) for tally in ended]

    # --- reading

    @property
    def actuations_since_service(self) -> int:
        return max(self.lifetime_actuations - self.actuations_at_service, 0)

    @property
    def chain_status(self) -> ChainStatus:
        if self.chain_broken_at is not None:
            return ChainStatus.BROKEN
        return ChainStatus.INCOMPLETE if self.pending else ChainStatus.VERIFIED

    @property
    def seen_through(self) -> int:
        """The highest seq of the stream this fold has been given, folded or waiting:
        where a reassignment folded now cuts the device's custody."""
        return max(self.applied_through, max(self.pending, default=0))

    @property
    def waiting_for_seq(self) -> int | None:
        return self.applied_through + 1 if self.pending else None

    def forecast(self) -> NeedleLifeForecast | None:
        """Needle life left on the installed cartridge at the recent punching pace."""
        cartridge = self.cartridge
        if cartridge is None:
            return None
        left = actuations_left(cartridge.actuations, cartridge.rated_actuations, cartridge.wear_pct)
        return forecast_needle_life(left, self.punch_rate.per_minute())

    def attention(
        self, *, online: bool | None = None, policy: MaintenancePolicy = DEFAULT_POLICY
    ) -> tuple[MaintenanceStatus, ...]:
        return maintenance_attention(
            cartridge=self.cartridge,
            fault_severities=[fault.severity for fault in self.open_faults.values()],
            actuations_since_service=self.actuations_since_service,
            online=online,
            integrity_incident=bool(self.integrity_alerts),
            policy=policy,
        )

    def summary(
        self, *, online: bool | None = None, policy: MaintenancePolicy = DEFAULT_POLICY
    ) -> DeviceSummary:
        """The device's read model now; ``online`` comes from presence (``None``: unknown)."""
        attention = self.attention(online=online, policy=policy)
        cartridge = self.cartridge
        return DeviceSummary(
            device_id=self.device_id,
            firmware_version=self.firmware_version,
            agent_version=self.agent_version,
            last_occurred_at=self.last_occurred_at,
            last_received_at=self.last_received_at,
            clock_skew_events=self.clock_skew_events,
            last_clock_skew_seq=self.last_clock_skew_seq,
            applied_through=self.applied_through,
            last_hash=self.last_hash,
            chain_status=self.chain_status,
            chain_broken_at=self.chain_broken_at,
            waiting_for_seq=self.waiting_for_seq,
            cartridge=None if cartridge is None else cartridge.view(),
            forecast=self.forecast(),
            lifetime_actuations=self.lifetime_actuations,
            lifetime_cores=self.lifetime_cores,
            lifetime_sessions=self.lifetime_sessions,
            actuations_since_service=self.actuations_since_service,
            last_serviced_at=self.last_serviced_at,
            open_faults=tuple(self.open_faults[code] for code in sorted(self.open_faults)),
            open_session_id=None if self.open_session is None else self.open_session.session_id,
            online=online,
            status=headline_status(attention),
            attention=attention,
            integrity_alerts=tuple(sorted(self.integrity_alerts)),
            interlocks=self.interlocks.summary(),
            actuations_at_service=self.actuations_at_service,
        )

    def session_audit(self, session_id: str) -> SessionAudit | None:
        tally = self.sessions.get(session_id)
        return None if tally is None else tally.audit(self.device_id)

    def session_audits(self) -> list[SessionAudit]:
        """Audits of the sessions held, in the order they started."""
        return [tally.audit(self.device_id) for tally in self.sessions.values()]

    # --- the fold proper: facts in seq order only

    def _see(self, fact: Fact) -> bool:
        """Take the last-seen times from ``fact``; whether its device time is skewed
        (judged once per fact: the fold needs it again, and comparing times of two
        time zone objects, the device's UTC and the database's, is not free)."""
        occurred, received = fact.occurred_at, fact.received_at
        # ``facts.implausible_device_time`` written out: two calls an event saved.
        skewed = occurred < CLOCK_FLOOR or (
            received is not None and occurred - received > CLOCK_SKEW_TOLERANCE
        )
        latest = self.last_occurred_at
        if (latest is None or occurred > latest) and not skewed:
            self.last_occurred_at = occurred
        if received is not None:
            last_received = self.last_received_at
            if last_received is None or received > last_received:
                self.last_received_at = received
        return skewed

    def _fold(self, fact: Fact, changes: list[Change], skewed: bool) -> None:
        if fact.prev_hash != self.last_hash:
            self._chain_break(fact, changes)
        self.applied_through = fact.seq
        self.last_hash = fact.hash
        if skewed:
            self.clock_skew_events += 1
            self.last_clock_skew_seq = fact.seq
        changes.append(Applied(fact))
        fold = _FOLDS.get(fact.type)
        if fold is None:
            return  # a type this fold does not read still takes its place in the chain
        try:
            fold(self, fact, changes)
        except (KeyError, TypeError, ValueError) as error:
            # Stored events were validated on the way in; only an altered store gets
            # here, and one bad row must not stop the device's projection.
            detail = f"{fact.type} lacks what its type needs ({error!r})"
            self._find(fact, FindingKind.MALFORMED, detail, changes)

    def _chain_break(self, fact: Fact, changes: list[Change]) -> None:
        if self.chain_broken_at is None:
            self.chain_broken_at = fact.seq
        if self.open_session is not None:
            # The open session started before this seq and has not ended: the failed
            # link lies inside it.
            self.open_session.chain_broken = True
        before = "the genesis hash" if fact.seq == 1 else f"the hash of seq {fact.seq - 1}"
        detail = f"prev_hash {fact.prev_hash[:12]}… is not {before} ({self.last_hash[:12]}…)"
        self._find(fact, FindingKind.CHAIN_BREAK, detail, changes)

    def _find(self, fact: Fact, kind: FindingKind, detail: str, changes: list[Change]) -> None:
        finding = Finding(fact.seq, kind, detail)
        self.findings.append(finding)
        changes.append(FindingRecorded(finding))

    def _not_installed(self, fact: Fact, named: str, changes: list[Change]) -> None:
        installed = "none" if self.cartridge is None else self.cartridge.cartridge_id
        detail = f"{fact.type} names cartridge {named}, but the installed one is {installed}"
        self._find(fact, FindingKind.CARTRIDGE_NOT_INSTALLED, detail, changes)

    def _agent_started(self, fact: Fact, changes: list[Change]) -> None:
        data = fact.data
        self.firmware_version = data["firmware_version"]
        self.agent_version = data["agent_version"]
        self.boot_id = data["boot_id"]

    def _cartridge_installed(self, fact: Fact, changes: list[Change]) -> None:
        tally = CartridgeTally.from_installed(fact.data, event_time(fact))
        recent = self.recent_cartridges
        earlier = recent.pop(tally.cartridge_id, None)
        if earlier is not None:
            tally.carry_use_from(earlier)
        recent[tally.cartridge_id] = tally
        if len(recent) > RECENT_CARTRIDGES:
            del recent[next(iter(recent))]  # the least recently installed
        self.cartridge = tally

    def _cartridge_removed(self, fact: Fact, changes: list[Change]) -> None:
        named = fact.data["cartridge_id"]
        if self.cartridge is None or self.cartridge.cartridge_id != named:
            self._not_installed(fact, named, changes)
            return
        self.cartridge = None

    def _session_started(self, fact: Fact, changes: list[Change]) -> None:
        data = fact.data
        tally = SessionTally.from_started(data, event_time(fact), fact.seq)
        if self.open_session is not None:
            detail = (
                f"session {tally.session_id} started while session "
                f"{self.open_session.session_id} is still open"
            )
            self._find(fact, FindingKind.SESSION_OVERLAP, detail, changes)
        named = data["cartridge_id"]
        if self.cartridge is None or self.cartridge.cartridge_id != named:
            self._not_installed(fact, named, changes)
        # The lot of the cartridge it names: the installed one, else one seen lately.
        known = self.recent_cartridges.get(named)
        tally.lot = None if known is None else known.lot
        tally.core_diameters_mm = [None if known is None else known.core_diameter_mm]
        self.sessions[tally.session_id] = tally
        self.open_session = tally
        self.lifetime_sessions += 1
        changes.append(SessionChanged(tally.session_id))

    def _cores_punched(self, fact: Fact, changes: list[Change]) -> None:
        data = fact.data
        actuations: int = data["actuations"]
        cores: int = data["cores"]
        named: str = data["cartridge_id"]
        self.lifetime_actuations += actuations
        self.lifetime_cores += cores
        cartridge = self.cartridge
        if cartridge is not None and cartridge.cartridge_id == named:
            cartridge.actuations += actuations
        else:
            self._not_installed(fact, named, changes)
            # Judged by the cartridge it names when that one is known (just removed,
            # say), else by the one installed.
            cartridge = self.recent_cartridges.get(named, cartridge)
        if cartridge is not None and cores != actuations * cartridge.needles:
            detail = (
                f"{cores} cores from {actuations} actuations of {cartridge.cartridge_id}, "
                f"{cartridge.needles} needles: expected {actuations * cartridge.needles}"
            )
            self._find(fact, FindingKind.CORES_MISMATCH, detail, changes)
        session = self.open_session
        session_id: str = data["session_id"]
        if session is not None and session.session_id == session_id:
            session.actuations_counted += actuations
            session.cores_counted += cores
            if cartridge is not None:
                session.cored_mm2 += cores * cartridge.core_area_mm2
            if named not in session.cartridge_ids:  # a swap: rare, so looked up only then
                known = self.recent_cartridges.get(named)
                session.use_cartridge(named, None if known is None else known.core_diameter_mm)
            changes.append(SessionChanged(session_id))
        else:
            open_id = "none" if session is None else session.session_id
            detail = f"punch names session {session_id}, but the open one is {open_id}"
            self._find(fact, FindingKind.SESSION_NOT_OPEN, detail, changes)
        self.punch_rate.add(data["window_start"], data["window_end"], actuations)

    def _needle_wear(self, fact: Fact, changes: list[Change]) -> None:
        data = fact.data
        named = data["cartridge_id"]
        cartridge = self.cartridge
        if cartridge is None or cartridge.cartridge_id != named:
            self._not_installed(fact, named, changes)
            return
        cartridge.wear_pct = data["wear_pct"]
        cartridge.insertion_force_n = data["insertion_force_n"]
        cartridge.reported_actuations = data["actuations_total"]

    def _fault_raised(self, fact: Fact, changes: list[Change]) -> None:
        data = fact.data
        fault = OpenFault(
            fault_code=data["fault_code"],
            severity=Severity(data["severity"]),
            message=data["message"],
            raised_at=event_time(fact),
            raised_seq=fact.seq,
        )
        self.open_faults[fault.fault_code] = fault
        changes.append(FaultOpened(fault))

    def _fault_cleared(self, fact: Fact, changes: list[Change]) -> None:
        code = fact.data["fault_code"]
        if self.open_faults.pop(code, None) is not None:
            changes.append(FaultClosed(code))

    def _session_ended(self, fact: Fact, changes: list[Change]) -> None:
        data = fact.data
        session = self.open_session
        session_id = data["session_id"]
        if session is None or session.session_id != session_id:
            open_id = "none" if session is None else session.session_id
            detail = f"session.ended names session {session_id}, but the open one is {open_id}"
            self._find(fact, FindingKind.SESSION_NOT_OPEN, detail, changes)
            return
        session.end(data, event_time(fact), fact.seq, fact.hash)
        self.open_session = None
        changes.append(SessionClosed(session_id, session.cores_counted == session.cores_reported))

    def _interlock_engaged(self, fact: Fact, changes: list[Change]) -> None:
        cartridge = self.cartridge
        installed = None if cartridge is None else (cartridge.cartridge_id, cartridge.lot)
        self.interlocks.engaged(fact.data, event_time(fact), fact.seq, installed)

    def _interlock_released(self, fact: Fact, changes: list[Change]) -> None:
        self.interlocks.released(fact.data)


_FOLDS: dict[str, Callable[[DeviceProjection, Fact, list[Change]], None]] = {
    "agent.started": DeviceProjection._agent_started,
    "cartridge.installed": DeviceProjection._cartridge_installed,
    "cartridge.removed": DeviceProjection._cartridge_removed,
    "session.started": DeviceProjection._session_started,
    "cores.punched": DeviceProjection._cores_punched,
    "needle.wear": DeviceProjection._needle_wear,
    "fault.raised": DeviceProjection._fault_raised,
    "fault.cleared": DeviceProjection._fault_cleared,
    "session.ended": DeviceProjection._session_ended,
    "interlock.engaged": DeviceProjection._interlock_engaged,
    "interlock.released": DeviceProjection._interlock_released,
}
"""How each device event type is folded; other types only advance the chain."""


def fold_device(device_id: str, facts: Iterable[Fact]) -> DeviceProjection:
    """The projection of ``facts`` (any order, repeats allowed) from an empty state."""
    projection = DeviceProjection(device_id)
    for fact in facts:
        projection.apply(fact)
    return projection
