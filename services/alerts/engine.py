"""The alert engine's decisions: given a device's fold after each event (or a clock
tick), which alerts to raise and which to resolve.  Pure: it fills lists of alert
events and book changes; the projector appends and commits them.

The *book* holds, per device, the conditions that hold and the alert raised for
each.  It is what keeps one open alert per (device, rule, subject): a condition
already in the book raises nothing more, however often it is evaluated.  The one
exception is an incident over refused events (``incidents``): a person closes it,
not the engine, so whether it is still open is read from its stream, and a repeat
while it is open updates it.

The needle-life rules of a cartridge are one alert (``ladder``): each rung that has
held is in the book under its own rule, all pointing at that alert, so a rung
reached for the first time and above every booked one escalates it, and the
cartridge's removal resolves it once.  A book written before the ladder may hold
one alert per rung; the alert of the lowest booked rung carries on, and all of
them resolve together.
"""

from collections.abc import Callable, Sequence, Set
from dataclasses import dataclass, field
from datetime import datetime

from schemas import SealedEvent
from services.alerts import ladder
from services.alerts.conditions import (
    Condition,
    Thresholds,
    finding_occurrence,
    session_occurrences,
    standing,
    standing_keys,
    timed,
)
from services.alerts.events import alert_id_for, raised
from services.alerts.incidents import (
    REFUSED_EVENTS,
    OpenIncident,
    Refusal,
    RefusalTally,
    incident_condition,
)
from services.alerts.policy import AlertPolicy
from services.projections.changes import (
    Applied,
    Change,
    FindingRecorded,
    SessionChanged,
    SessionClosed,
)
from services.projections.device import DeviceProjection
from services.projections.facts import Fact

Key = tuple[str, str]
"""(rule, subject)"""

_TIMED_RULES = frozenset({"device_offline"})
_OCCURRENCE_RULES = frozenset({"session_count_mismatch", "coverage_exceeded"})
_STATE_KINDS = frozenset({"standing", "timed"})
_THRESHOLDS_KEPT = 1024
"""Policies whose thresholds an engine keeps: one a clinic, far more than a batch meets."""


def kind_of(key: Key) -> str:
    rule, subject = key
    if rule in _OCCURRENCE_RULES or subject.startswith("seq-") or subject == REFUSED_EVENTS:
        return "occurrence"
    if rule in _TIMED_RULES or subject.startswith("gap-"):
        return "timed"
    return "standing"


@dataclass(frozen=True, slots=True)
class Resolution:
    alert_id: str
    device_id: str
    at: datetime
    note: str


@dataclass(frozen=True, slots=True)
class IncidentUpdate:
    """An open incident to raise again with what it covers now (``events.raised_again``)."""

    alert_id: str
    device_id: str
    clinic_id: str | None
    condition: Condition
    at: datetime
    """When the newest refusal it counts arrived."""
    refusals: tuple[Refusal, ...]
    """The refusals it adds: a new incident's, should a person resolve this one first."""


@dataclass(frozen=True, slots=True)
class Escalation:
    """An open needle-life alert to climb to ``condition``'s rung (``events.escalated``)."""

    alert_id: str
    device_id: str
    condition: Condition
    at: datetime


@dataclass(slots=True)
class AlertDecisions:
    raised: list[SealedEvent] = field(default_factory=list)
    escalated: list[Escalation] = field(default_factory=list)
    """In the order they happened; appended after ``raised``, before ``resolved``."""
    updated: list[IncidentUpdate] = field(default_factory=list)
    resolved: list[Resolution] = field(default_factory=list)
    added: dict[tuple[str, str, str], str] = field(default_factory=dict)
    """(device, rule, subject) → alert id, new in the book."""
    removed: set[tuple[str, str, str]] = field(default_factory=set)


class AlertEngine:
    def __init__(
        self,
        book: dict[str, dict[Key, str]],
        policy_of: Callable[[str | None], AlertPolicy],
    ) -> None:
        self.book = book
        self._policy_of = policy_of
        self.decisions = AlertDecisions()
        self._thresholds: dict[int, tuple[AlertPolicy, Thresholds]] = {}
        self._last_thresholds: tuple[AlertPolicy, Thresholds] | None = None

    def after_fold(
        self,
        projection: DeviceProjection,
        fact: Fact,
        changes: Sequence[Change],
        clinic_id: str | None,
    ) -> None:
        """Evaluate once ``fact`` (and what it unblocked) is folded."""
        if not changes:
            return
        policy = self._policy_of(clinic_id)
        thresholds = self._thresholds_of(policy)
        at = fact.received_at or fact.occurred_at
        device_id = projection.device_id
        for change in changes:
            # Most changes are a fact taking its place (``Applied``) or a punch into a
            # session (``SessionChanged``): those two are asked first, this runs for
            # every change of every event.
            if isinstance(change, Applied):
                continue
            if not isinstance(change, SessionChanged):
                if isinstance(change, FindingRecorded):
                    self._occurred(device_id, clinic_id, finding_occurrence(change.finding, at))
                    continue
                if not isinstance(change, SessionClosed):
                    continue
                if change.reconciled:
                    # Decided on what had arrived after the grace period, then the
                    # missing events came after all: the session reconciles, so the
                    # alert was wrong.
                    self._retract(
                        device_id,
                        ("session_count_mismatch", change.session_id),
                        at,
                        "the missing events arrived and the session reconciles",
                    )
            tally = projection.sessions.get(change.session_id)
            if tally is None:
                continue
            # The audit is built only when it may raise something: once per punch
            # is too dear.  ``reconciled is False`` written out: the counts differ.
            book = self.book.get(device_id, {})
            reported = tally.cores_reported
            if (
                reported is not None
                and tally.cores_counted != reported
                and ("session_count_mismatch", tally.session_id) not in book
            ) or (
                tally.coverage_pct > thresholds.coverage_max_pct
                and ("coverage_exceeded", tally.session_id) not in book
            ):
                audit = tally.audit(device_id)
                for condition in session_occurrences(audit, policy, at):
                    self._occurred(device_id, clinic_id, condition)
        # The device just spoke: silence is over; a gap may have been filled.  With no
        # facts waiting ``timed`` holds nothing (``now`` is ``last_heard``, and silence
        # needs ``offline_after_s`` > 0 of it), so the book alone tells whether settling
        # would change anything; most folds (a punch on a fresh cartridge) change nothing,
        # and building the conditions, forecast included, is the dear part.
        book = self.book.setdefault(device_id, {})
        if not projection.pending and _as_booked(book, standing_keys(projection, thresholds)):
            return
        held = standing(projection, policy, at) | timed(projection, policy, at, at)
        self._settle(device_id, clinic_id, held, at, _STATE_KINDS)

    def _thresholds_of(self, policy: AlertPolicy) -> Thresholds:
        # By identity: a lookup returns the same policy object for a clinic, and
        # hashing a pydantic model would cost what the cache saves.  The last one
        # first: a batch's events come in runs of one device, so of one clinic.
        last = self._last_thresholds
        if last is not None and last[0] is policy:
            return last[1]
        found = self._thresholds.get(id(policy))
        if found is None or found[0] is not policy:
            if len(self._thresholds) >= _THRESHOLDS_KEPT:
                self._thresholds.clear()  # a lookup that builds its policies anew
            found = self._thresholds[id(policy)] = (policy, Thresholds.of(policy))
        self._last_thresholds = found
        return found[1]

    def reevaluate(self, projection: DeviceProjection, at: datetime, clinic_id: str | None) -> None:
        """After a change from outside the device's stream (a service visit)."""
        held = standing(projection, self._policy_of(clinic_id), at)
        self._settle(projection.device_id, clinic_id, held, at, {"standing"})

    def refused(
        self,
        device_id: str,
        refusals: Sequence[Refusal],
        incident: OpenIncident | None,
        clinic_id: str | None,
    ) -> None:
        """Integrity dead letters: the store refused some of the device's events.

        They join ``incident``, the device's incident still open (read from its
        stream by the caller), as an update; with none open they open one.  Refusals
        the incident counted already, and resends of events it counts, change nothing.
        """
        earlier = RefusalTally() if incident is None else incident.tally
        new = sorted(
            (refusal for refusal in refusals if refusal.letter_id > earlier.through_letter),
            key=lambda refusal: refusal.letter_id,
        )
        if not new:
            return
        tally = earlier.add(new)
        condition = incident_condition(device_id, tally, new[0].received_at, new[-1].detail)
        if incident is None:
            self._raise(device_id, clinic_id, condition)
            return
        if tally.refused_events == earlier.refused_events:
            return  # resends of events refused already: nothing new to say
        self.decisions.updated.append(IncidentUpdate(
            incident.alert_id, device_id, clinic_id, condition, new[-1].received_at, tuple(new),
        ))  # fmt: skip

    def tick(
        self,
        projection: DeviceProjection,
        now: datetime,
        last_heard: datetime | None,
        clinic_id: str | None,
    ) -> None:
        """Evaluate the clock-driven conditions of a device that is quiet."""
        held = timed(projection, self._policy_of(clinic_id), now, last_heard)
        self._settle(projection.device_id, clinic_id, held, now, {"timed"})

    def _occurred(self, device_id: str, clinic_id: str | None, condition: Condition) -> None:
        book = self.book.setdefault(device_id, {})
        if condition.key not in book:
            self._raise(device_id, clinic_id, condition)

    def _settle(
        self,
        device_id: str,
        clinic_id: str | None,
        held: dict[Key, Condition],
        at: datetime,
        kinds: Set[str],
    ) -> None:
        book = self.book.setdefault(device_id, {})
        rungs: dict[str, list[Condition]] = {}
        for key, condition in held.items():
            if ladder.on_ladder(key[0]):
                rungs.setdefault(key[1], []).append(condition)
            elif key not in book:
                self._raise(device_id, clinic_id, condition)
        for cartridge, holding in rungs.items():
            self._climb(device_id, clinic_id, cartridge, holding)
        ended: dict[str, None] = {}  # alert ids in order, each once
        for key in [key for key in book if kind_of(key) in kinds and key not in held]:
            if ladder.on_ladder(key[0]) and key[1] in rungs:
                continue  # a lower rung no longer counts, the cartridge's alert stands
            ended[book.pop(key)] = None
            self.decisions.removed.add((device_id, *key))
            self.decisions.added.pop((device_id, *key), None)
        for alert_id in ended:
            self.decisions.resolved.append(
                Resolution(alert_id, device_id, at, "the condition no longer holds")
            )

    def _climb(
        self,
        device_id: str,
        clinic_id: str | None,
        cartridge: str,
        holding: list[Condition],
    ) -> None:
        """The rungs that hold for ``cartridge``: raise its alert on the highest, or
        escalate the alert it has when that rung is above all it has reached."""
        book = self.book.setdefault(device_id, {})
        reached = {
            rule: alert_id
            for (rule, subject), alert_id in book.items()
            if subject == cartridge and ladder.on_ladder(rule)
        }
        highest = ladder.top(holding)
        if not reached:
            self._raise(device_id, clinic_id, highest)
            alert_id = book[highest.key]
        else:
            alert_id = reached[min(reached, key=ladder.rung)]
            if ladder.climbs(highest.rule.value, reached):
                self.decisions.escalated.append(
                    Escalation(alert_id, device_id, highest, highest.since)
                )
        for condition in holding:
            if condition.key not in book:
                book[condition.key] = alert_id
                self.decisions.added[(device_id, *condition.key)] = alert_id
                self.decisions.removed.discard((device_id, *condition.key))

    def _retract(self, device_id: str, key: Key, at: datetime, note: str) -> None:
        book = self.book.get(device_id, {})
        alert_id = book.pop(key, None)
        if alert_id is not None:
            self.decisions.removed.add((device_id, *key))
            self.decisions.added.pop((device_id, *key), None)
            self.decisions.resolved.append(Resolution(alert_id, device_id, at, note))

    def _raise(self, device_id: str, clinic_id: str | None, condition: Condition) -> None:
        alert_id = alert_id_for(device_id, condition)
        self.book.setdefault(device_id, {})[condition.key] = alert_id
        self.decisions.added[(device_id, *condition.key)] = alert_id
        self.decisions.removed.discard((device_id, *condition.key))
        self.decisions.raised.append(raised(device_id, clinic_id, condition))


def _as_booked(book: dict[Key, str], held: list[Key]) -> bool:
    """Whether settling ``held`` (standing and timed keys) against ``book`` would do
    nothing: every key that holds is booked (so nothing is raised, and no ladder rung
    above the booked ones climbs), and every standing or timed key booked either holds
    or is a lower needle-life rung of a cartridge whose alert stands (``_settle``)."""
    for key in held:
        if key not in book:
            return False
    if len(book) == len(held):
        return True  # every booked key is one that holds
    cartridges = {subject for rule, subject in held if ladder.on_ladder(rule)}
    for key in book:
        if key in held or kind_of(key) not in _STATE_KINDS:
            continue
        if not (ladder.on_ladder(key[0]) and key[1] in cartridges):
            return False
    return True
