"""Chain verification now, from the stored bytes (``coreline verify``), answered as a
principal may see it: the status is the chain's, the findings only those at events
the principal owns (DESIGN §9), never another clinic's."""

from collections.abc import Sequence
from typing import Any
from uuid import UUID

from sqlalchemy import Connection

from schemas.streams import device_stream
from services.api.access import Principal
from services.api.models import FindingOut, VerificationOut
from services.api.queries.scope import visible_seqs
from services.audit.verify import audit_stream
from services.eventstore import EventStore


def verify_session(
    connection: Connection,
    store: EventStore,
    principal: Principal,
    device_id: str,
    session_id: UUID,
) -> VerificationOut:
    """The session verifies when every link from its device's first event through its
    ``session.ended`` holds; ``device_id`` is the session's, already in scope."""
    audit = audit_stream(store, device_stream(device_id), session_id)
    verdict = audit.session_verdict()
    at_fault = [] if verdict.finding is None else [verdict.finding]
    return VerificationOut(
        device_id=device_id,
        session_id=str(session_id),
        status=verdict.status.value,
        events_checked=audit.events_checked,
        findings=_visible(connection, store, principal, device_id, at_fault),
    )


def verify_device(
    connection: Connection, store: EventStore, principal: Principal, device_id: str
) -> VerificationOut:
    """The device's whole stream; ``device_id`` already in scope."""
    audit = audit_stream(store, device_stream(device_id))
    return VerificationOut(
        device_id=device_id,
        session_id=None,
        status=audit.status.value,
        events_checked=audit.events_checked,
        findings=_visible(connection, store, principal, device_id, audit.findings),
    )


def _visible(
    connection: Connection,
    store: EventStore,
    principal: Principal,
    device_id: str,
    findings: Sequence[Any],
) -> list[FindingOut]:
    seen = visible_seqs(connection, store, principal, device_id, (f.seq for f in findings))
    return [_finding(finding) for finding in findings if finding.seq in seen]


def _finding(finding: Any) -> FindingOut:
    return FindingOut(
        defect=finding.defect.value,
        seq=finding.seq,
        event_id=str(finding.event_id),
        detail=finding.detail,
    )
