"""What folding a fact changed, for the runner (rows to write) and the alert engine
(rules to evaluate).

``DeviceProjection.apply`` returns these in the order they happened.  Every folded
fact yields ``Applied`` first, then what it did; a fact that was a redelivery, or
that waits behind a gap, yields nothing until it is folded.
"""

from dataclasses import dataclass

from services.projections.facts import Fact
from services.projections.faults import OpenFault
from services.projections.findings import Finding


@dataclass(frozen=True, slots=True)
class Applied:
    """``fact`` was folded; the device row (position, last hash, counters) changed."""

    fact: Fact


@dataclass(frozen=True, slots=True)
class SessionChanged:
    """The audit of ``session_id`` changed: started or punched into."""

    session_id: str


@dataclass(frozen=True, slots=True)
class SessionClosed:
    """``session.ended`` was folded: reconciliation and chain status are now final."""

    session_id: str
    reconciled: bool


@dataclass(frozen=True, slots=True)
class FaultOpened:
    fault: OpenFault


@dataclass(frozen=True, slots=True)
class FaultClosed:
    fault_code: str


@dataclass(frozen=True, slots=True)
class FindingRecorded:
    finding: Finding


Change = Applied | SessionChanged | SessionClosed | FaultOpened | FaultClosed | FindingRecorded
