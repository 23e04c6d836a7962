"""Which alert conditions hold for a device, as pure functions of its fold.

Two kinds.  *Standing* conditions are read off the device's state and clear by
themselves (a worn cartridge is removed, a fault is cleared, the device speaks
again): the engine raises an alert when one starts to hold and resolves it when it
stops.  *Occurrences* are things that happened (a session that did not reconcile,
coverage over the maximum, a broken link): their alerts stay open until someone
resolves them.

Every condition carries the moment it began, taken from the events themselves, so
evaluating the same state twice (a redelivered batch, a restart) yields the same
alert, byte for byte.  That moment is on one clock, the platform's: the receive time
of the event that made the condition hold (DESIGN §8), so an alert's raised and
resolved times compare.  What the device's own clock said is kept beside it
(``device_time``) where it differs.

Events the store refused are not judged here but in ``incidents``: one incident per
device, whatever the number of seqs.
"""

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from schemas import Severity
from schemas.platform_events import AlertRule
from services.alerts.policy import AlertPolicy
from services.projections.cartridge import CartridgeTally, life_used_pct
from services.projections.device import DeviceProjection
from services.projections.findings import Finding
from services.projections.forecast import forecast_message
from services.projections.session import SessionAudit

ContextValue = str | int | float | bool | None

_FAULT_SEVERITIES = frozenset({Severity.WARNING, Severity.CRITICAL})


@dataclass(frozen=True, slots=True)
class Condition:
    rule: AlertRule
    subject: str
    """What the alert is about: a cartridge, a fault code, a session, a seq, the
    device's refused events (``incidents``)."""
    severity: Severity
    message: str
    since: datetime
    context: dict[str, ContextValue] = field(default_factory=dict)
    spell: str | None = None
    """What tells this spell of a condition that comes and goes from the next, when
    ``since`` cannot: an incident's opening dead letter (``incidents``), since two
    incidents of a device may open within one millisecond, the resolution of ``since``."""
    device_time: datetime | None = None
    """When the device says it began, where that is not ``since``."""

    @property
    def key(self) -> tuple[str, str]:
        return (self.rule.value, self.subject)


def standing(
    projection: DeviceProjection, policy: AlertPolicy, since: datetime
) -> dict[tuple[str, str], Condition]:
    """Conditions that hold now, from state alone; ``since`` (the platform's receive
    time of what is being evaluated) stamps new ones.  Which ones hold is
    ``standing_keys``: the engine asks that first, and builds these only when the
    answer differs from its book."""
    held: dict[tuple[str, str], Condition] = {}

    def hold(condition: Condition) -> None:
        held[condition.key] = condition

    cartridge = projection.cartridge
    thresholds = Thresholds.of(policy)
    low, end_of_life, overuse = _rungs(cartridge, thresholds)
    if cartridge is not None and (low or end_of_life or overuse):
        view = cartridge.view()
        life = view.life_used_pct
        context: dict[str, ContextValue] = {
            "cartridge_id": view.cartridge_id,
            "life_used_pct": round(life, 1),
            "actuations": view.actuations,
            "rated_actuations": view.rated_actuations,
        }
        left = ""
        if low:
            forecast = projection.forecast()
            left = f"; {forecast_message(forecast)}" if forecast is not None else ""
            hold(Condition(
                AlertRule.NEEDLE_LIFE_LOW, view.cartridge_id, Severity.WARNING,
                f"cartridge {view.cartridge_id} is {life:.0f} % worn{left}", since, context,
            ))  # fmt: skip
        if end_of_life:
            hold(Condition(
                AlertRule.NEEDLE_END_OF_LIFE, view.cartridge_id, Severity.CRITICAL,
                f"cartridge {view.cartridge_id} is at end of life ({life:.0f} % worn): "
                f"replace it{left}", since, context,
            ))  # fmt: skip
        if overuse:
            hold(Condition(
                AlertRule.CARTRIDGE_OVERUSE, view.cartridge_id, Severity.CRITICAL,
                f"cartridge {view.cartridge_id} has {view.actuations} actuations, more than "
                f"its rating of {view.rated_actuations}", since, context,
            ))  # fmt: skip
    for fault in projection.open_faults.values():
        if fault.severity in _FAULT_SEVERITIES:
            hold(Condition(
                AlertRule.DEVICE_FAULT, fault.fault_code, fault.severity,
                f"{fault.fault_code}: {fault.message}", since,
                {"fault_code": fault.fault_code, "raised_seq": fault.raised_seq},
                device_time=_beside(fault.raised_at, since),
            ))  # fmt: skip
    if _service_due(projection, thresholds):
        hold(Condition(
            AlertRule.SERVICE_DUE, "actuator", Severity.WARNING,
            f"{projection.actuations_since_service} actuations since the last service "
            f"(interval {policy.service_interval})", since,
            {"actuations_since_service": projection.actuations_since_service},
        ))  # fmt: skip
    return held


@dataclass(frozen=True, slots=True)
class Thresholds:
    """A policy's standing thresholds as plain values: read for every fold, where a
    pydantic model's attribute costs several times a slot's."""

    needle_life_low_pct: float
    needle_end_of_life_pct: float
    service_due_at: float
    """Actuations since the last service from which ``service_due`` holds (> 0)."""
    coverage_max_pct: float
    """Above it a session's coverage raises ``coverage_exceeded`` (read per punch)."""

    @classmethod
    def of(cls, policy: AlertPolicy) -> "Thresholds":
        return cls(
            policy.needle_life_low_pct,
            policy.needle_end_of_life_pct,
            policy.service_interval * policy.service_due_fraction,
            policy.coverage_max_pct,
        )


def standing_keys(projection: DeviceProjection, thresholds: Thresholds) -> list[tuple[str, str]]:
    """The keys of ``standing``'s conditions, in its order, without their messages,
    contexts and forecasts: the same predicates decide both (``_rungs``,
    ``_service_due``).  Asked after every fold, so the rungs are read from the tally's
    counts here, one call instead of three."""
    keys: list[tuple[str, str]] = []
    cartridge = projection.cartridge
    if cartridge is not None:
        actuations, rated = cartridge.actuations, cartridge.rated_actuations
        life = life_used_pct(actuations, rated, cartridge.wear_pct)
        if life >= thresholds.needle_life_low_pct:
            keys.append((_NEEDLE_LIFE_LOW, cartridge.cartridge_id))
        if life >= thresholds.needle_end_of_life_pct:
            keys.append((_NEEDLE_END_OF_LIFE, cartridge.cartridge_id))
        if actuations > rated:
            keys.append((_CARTRIDGE_OVERUSE, cartridge.cartridge_id))
    if projection.open_faults:  # seldom: no generator built for every punch
        keys.extend(
            (_DEVICE_FAULT, fault.fault_code)
            for fault in projection.open_faults.values()
            if fault.severity in _FAULT_SEVERITIES
        )
    if projection.lifetime_actuations - projection.actuations_at_service >= (
        thresholds.service_due_at
    ):  # ``_service_due`` written out
        keys.append((_SERVICE_DUE, "actuator"))
    return keys


_NEEDLE_LIFE_LOW = AlertRule.NEEDLE_LIFE_LOW.value
_NEEDLE_END_OF_LIFE = AlertRule.NEEDLE_END_OF_LIFE.value
_CARTRIDGE_OVERUSE = AlertRule.CARTRIDGE_OVERUSE.value
_DEVICE_FAULT = AlertRule.DEVICE_FAULT.value
_SERVICE_DUE = AlertRule.SERVICE_DUE.value


def _rungs(cartridge: CartridgeTally | None, thresholds: Thresholds) -> tuple[bool, bool, bool]:
    """Which needle-life rungs hold for ``cartridge``: low, end of life, overuse."""
    if cartridge is None:
        return False, False, False
    life = cartridge.life_used_pct()
    return (
        life >= thresholds.needle_life_low_pct,
        life >= thresholds.needle_end_of_life_pct,
        cartridge.actuations > cartridge.rated_actuations,
    )


def _service_due(projection: DeviceProjection, thresholds: Thresholds) -> bool:
    # ``actuations_since_service`` floors the difference at 0, which no positive
    # threshold is below: the difference itself answers alike, without the property.
    since = projection.lifetime_actuations - projection.actuations_at_service
    return since >= thresholds.service_due_at


def timed(
    projection: DeviceProjection, policy: AlertPolicy, now: datetime, last_heard: datetime | None
) -> dict[tuple[str, str], Condition]:
    """Standing conditions that need a clock: silence during a session, and events
    waiting behind a gap for longer than the grace period."""
    held: dict[tuple[str, str], Condition] = {}
    session = projection.open_session
    if session is not None and last_heard is not None:
        silent_from = last_heard + timedelta(seconds=policy.offline_after_s)
        if now >= silent_from:
            condition = Condition(
                AlertRule.DEVICE_OFFLINE, "presence", Severity.WARNING,
                f"no message for {policy.offline_after_s / 60:.0f} minutes during session "
                f"{session.session_id}", silent_from,
                {"session_id": session.session_id, "last_heard": last_heard.isoformat()},
            )  # fmt: skip
            held[condition.key] = condition
    waiting = projection.waiting_for_seq
    if waiting is not None:
        earliest = min(
            (fact.received_at for fact in projection.pending.values() if fact.received_at),
            default=None,
        )
        if earliest is not None:
            overdue_from = earliest + timedelta(seconds=policy.gap_grace_s)
            if now >= overdue_from:
                condition = Condition(
                    AlertRule.INTEGRITY, f"gap-{waiting}", Severity.CRITICAL,
                    f"event {waiting} is still missing after {policy.gap_grace_s / 60:.0f} "
                    f"minutes; {len(projection.pending)} later events wait behind it",
                    overdue_from, {"missing_seq": waiting},
                )  # fmt: skip
                held[condition.key] = condition
            ended = _ended_behind_gap(projection, overdue_from, now)
            if ended is not None:
                held[ended.key] = ended
    return held


def _ended_behind_gap(
    projection: DeviceProjection, overdue_from: datetime, now: datetime
) -> Condition | None:
    """A session whose ``session.ended`` waits behind a gap past the grace period is
    reconciled with what arrived (DESIGN §7): a shortfall raises the mismatch."""
    session = projection.open_session
    if session is None or now < overdue_from:
        return None
    for fact in projection.pending.values():
        if fact.type == "session.ended" and fact.data.get("session_id") == session.session_id:
            reported = fact.data.get("cores_total")
            if reported == session.cores_counted:
                return None
            return Condition(
                AlertRule.SESSION_COUNT_MISMATCH, session.session_id, Severity.CRITICAL,
                f"session {session.session_id}: {session.cores_counted} cores arrived, the "
                f"device reported {reported}, and events are still missing after the grace "
                "period", overdue_from,
                {"session_id": session.session_id, "cores_counted": session.cores_counted,
                 "cores_reported": reported},
            )  # fmt: skip
    return None


def session_occurrences(audit: SessionAudit, policy: AlertPolicy, at: datetime) -> list[Condition]:
    """What a session's audit shows wrong, as of ``at`` (the platform's receive time
    of the event that showed it); the session's own times are the device's."""
    found: list[Condition] = []
    moment = _beside(audit.ended_at or audit.started_at, at)
    if audit.reconciled is False:
        found.append(Condition(
            AlertRule.SESSION_COUNT_MISMATCH, audit.session_id, Severity.CRITICAL,
            f"session {audit.session_id}: {audit.cores_counted} cores counted, the device "
            f"reported {audit.cores_reported}", at,
            {"session_id": audit.session_id, "cores_counted": audit.cores_counted,
             "cores_reported": audit.cores_reported}, device_time=moment,
        ))  # fmt: skip
    if audit.coverage_pct > policy.coverage_max_pct:
        found.append(Condition(
            AlertRule.COVERAGE_EXCEEDED, audit.session_id, Severity.CRITICAL,
            f"session {audit.session_id} removed {audit.coverage_pct:.1f} % of the "
            f"{audit.treatment_area} area, over the {policy.coverage_max_pct:g} % maximum",
            at, {"session_id": audit.session_id, "coverage_pct": round(audit.coverage_pct, 3)},
            device_time=moment,
        ))  # fmt: skip
    return found


def finding_occurrence(finding: Finding, at: datetime) -> Condition:
    return Condition(
        AlertRule.INTEGRITY, f"seq-{finding.seq}-{finding.kind.value}", Severity.CRITICAL,
        finding.detail, at, {"seq": finding.seq, "kind": finding.kind.value},
    )  # fmt: skip


def _beside(device_time: datetime | None, platform_time: datetime) -> datetime | None:
    """The device's time to keep beside the platform's, unless it says the same."""
    return None if device_time is None or device_time == platform_time else device_time
