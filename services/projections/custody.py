"""Custody: which clinic held a device over which part of its stream (DESIGN §9).

A device's custody is a run of intervals folded from the ``device.assigned`` events of
its registry stream.  Pure: no I/O, no clock; ``assign`` returns a new value.

The boundary.  An interval is cut in the device's own seqs: an assignment folded in
the store's global order closes the holder's interval at the highest seq of the
device's stream seen so far and opens the next holder's at the seq after it.  A
device's events join the global order in seq order (chain custody, DESIGN §4.2: an
event that arrives past a hole joins only once its predecessor is stored), so the
events before an assignment in the global order are exactly those at or below its
cut.  That makes the platform's one order, not any process's clock, decide which side
of a reassignment an event falls on, and lets a reader judge a stored event by its
seq alone, without its global position.

Ownership (``event_owner``).  A session belongs to the clinic holding the device when
it started; every event naming a session belongs to that session's clinic, its punches
and its end included, even when they arrive after a reassignment.  Any other event
(faults, wear, cartridge changes, agent starts) belongs to the holder of the interval
its seq falls in; before the first assignment that is no clinic (``None``).
"""

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime


@dataclass(frozen=True, slots=True)
class CustodyInterval:
    """One holder's stretch of a device's stream: seqs ``from_seq``..``to_seq``."""

    device_id: str
    clinic_id: str | None
    """``None``: taken back by the manufacturer, held by no clinic."""
    from_seq: int
    to_seq: int | None
    """The last seq of the interval; ``None`` while it is open.  An assignment that
    follows another with no event between leaves an empty interval (``to_seq <
    from_seq``): it holds no seq."""
    assigned_seq: int
    """The seq, in the device's registry stream, of the ``device.assigned`` opening it."""
    assigned_at: datetime
    """The platform's receive time of that assignment (shown to people, never compared)."""
    released_at: datetime | None = None
    """The receive time of the assignment that closed it."""

    def holds(self, seq: int) -> bool:
        return self.from_seq <= seq and (self.to_seq is None or seq <= self.to_seq)


@dataclass(frozen=True, slots=True)
class Custody:
    """Every interval of one device, oldest first."""

    device_id: str
    intervals: tuple[CustodyInterval, ...] = ()

    @property
    def assignments_through(self) -> int:
        """The registry seq of the newest assignment folded (0: none yet)."""
        return self.intervals[-1].assigned_seq if self.intervals else 0

    @property
    def holder(self) -> str | None:
        """Who holds the device now."""
        return self.intervals[-1].clinic_id if self.intervals else None

    def holder_at(self, seq: int) -> str | None:
        """The clinic whose interval holds ``seq`` (``None``: no clinic's)."""
        for interval in reversed(self.intervals):
            if interval.holds(seq):
                return interval.clinic_id
        return None


def assign(
    custody: Custody,
    clinic_id: str | None,
    *,
    registry_seq: int,
    device_seen_through: int,
    at: datetime,
) -> Custody:
    """``custody`` after the ``device.assigned`` at ``registry_seq`` of the registry
    stream, folded when the device's stream had been seen through
    ``device_seen_through``.

    An assignment at or below ``assignments_through`` was folded already (a redelivery,
    or a replay racing the live projector) and changes nothing.
    """
    if registry_seq <= custody.assignments_through:
        return custody
    intervals = list(custody.intervals)
    if intervals:
        last = intervals[-1]
        # Never before the interval's own start: a device that reported nothing since
        # leaves the interval empty rather than reaching back into the one before.
        cut = max(device_seen_through, last.from_seq - 1)
        intervals[-1] = replace(last, to_seq=cut, released_at=at)
        start = cut + 1
    else:
        start = device_seen_through + 1
    opened = CustodyInterval(custody.device_id, clinic_id, start, None, registry_seq, at)
    return Custody(custody.device_id, (*intervals, opened))


def event_owner(
    custody: Custody,
    seq: int,
    session_id: str | None,
    session_clinics: Mapping[str, str | None],
) -> str | None:
    """The clinic a device's event at ``seq`` belongs to (see the module doc).

    ``session_clinics`` maps the sessions known to their clinics; an event naming a
    session not in it (one not folded yet, or a stray punch) is judged by its seq.
    """
    if session_id is not None and session_id in session_clinics:
        return session_clinics[session_id]
    return custody.holder_at(seq)
