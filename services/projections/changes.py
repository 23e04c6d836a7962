"""What folding a fact changed, for the runner (rows to write) and the alert engine
(rules to evaluate).

``DeviceProjection.apply`` returns these in the order they happened.  Every folded
fact yields ``Applied`` first, then what it did; a fact that was a redelivery, or
that waits behind a gap, yields nothing until it is folded.

They are slotted dataclasses but not frozen: a fold builds one or two for every
event, and a frozen one's ``__init__`` sets each field through
``object.__setattr__``, twice the cost (0.19 µs against 0.09).  Nothing changes
them once ``apply`` has returned them; they compare by value and are not hashed.
"""

from dataclasses import dataclass

from services.projections.facts import Fact
from services.projections.faults import OpenFault
from services.projections.findings import Finding


@dataclass(slots=True)
class Applied:
    """``fact`` was folded; the device row (position, last hash, counters) changed."""

    fact: Fact


@dataclass(slots=True)
class SessionChanged:
    """The audit of ``session_id`` changed: started or punched into."""

    session_id: str


@dataclass(slots=True)
class SessionClosed:
    """``session.ended`` was folded: reconciliation and chain status are now final."""

    session_id: str
    reconciled: bool


@dataclass(slots=True)
class FaultOpened:
    fault: OpenFault


@dataclass(slots=True)
class FaultClosed:
    fault_code: str


@dataclass(slots=True)
class FindingRecorded:
    finding: Finding


Change = Applied | SessionChanged | SessionClosed | FaultOpened | FaultClosed | FindingRecorded
