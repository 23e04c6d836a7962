"""Auditing one stored stream's hash chain from its stored bytes.  Pure: no I/O.

``schemas.verify_chain`` answers "does this chain hold?" and stops at the first bad
link, which is what ingest needs.  Auditing a database someone may have tampered
with needs a little more, and this fold gives it:

* it carries on past a bad link, re-anchoring on the *stored* hash of the event it
  has just read, so one altered event is one finding rather than a cascade, and the
  report can also say what else is wrong (a gap after a break, a second alteration);
* it checks the columns the store keeps beside the hashed body (``event_id``,
  ``device_id``, ``type``, ``occurred_at``, ``prev_hash``): no hash covers them, yet
  queries and the ingest chain check read them;
* it follows one session, so ``coreline verify --session`` can say whether every
  link from the stream's start through that session's end holds.

What tampering looks like here (a tamperer who can disable the append-only
triggers):

* a body changed in place no longer hashes to its stored hash: BROKEN at that seq.
  With the hash recomputed too, the next event's ``prev_hash`` no longer matches:
  BROKEN at the next seq;
* a row deleted from the middle leaves a gap: INCOMPLETE, naming the missing seqs
  and the stored event after them, whose link can no longer be checked;
* seq values swapped between rows: every body names its own seq, so the lower row
  is BROKEN (and the higher one, and the link after them).

What the stored chain alone cannot show: the newest events deleted (nothing points
forward, so the chain just ends earlier), the newest event altered and rehashed
(only its successor would vouch for its hash), a whole stream deleted, or a tail
rewritten from some event onward with every later hash recomputed.  A chain proves
it is consistent with itself, not that it is what the device sent; catching those
takes a head hash kept somewhere else (the device's outbox, a published checkpoint).
"""

from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import Any, Final, Protocol
from uuid import UUID

import orjson

from schemas import GENESIS_HASH, ChainStatus, is_device_stream
from schemas.canonical import sha256_hex

MAX_KEPT_FINDINGS: Final = 10
"""Findings kept per stream for the report; the rest are only counted."""


class StoredRecord(Protocol):
    """What the audit reads of a stored event (``services.eventstore.StoredEvent`` is one)."""

    @property
    def seq(self) -> int: ...
    @property
    def event_id(self) -> UUID: ...
    @property
    def device_id(self) -> str: ...
    @property
    def type(self) -> str: ...
    @property
    def occurred_at(self) -> datetime: ...
    @property
    def hash(self) -> str: ...
    @property
    def prev_hash(self) -> str: ...
    @property
    def body(self) -> bytes: ...


class Defect(StrEnum):
    ALTERED = "altered"
    """The stored body does not hash to the stored hash."""
    NOT_AN_EVENT = "not_an_event"
    """The stored body is not a JSON event with a seq and a prev_hash."""
    RENUMBERED = "renumbered"
    """The hashed body names another seq than the row it is stored in."""
    UNLINKED = "unlinked"
    """``prev_hash`` is not the stored hash of the previous seq."""
    COLUMN_MISMATCH = "column_mismatch"
    """A stored column disagrees with the hashed body."""
    OUT_OF_ORDER = "out_of_order"
    """Records were given in the wrong order (a caller's mistake, never the store's)."""
    MISSING = "missing"
    """Seqs are missing before this record (a gap)."""


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing wrong, located at a stored event (for a gap: the event after it)."""

    defect: Defect
    seq: int
    event_id: UUID
    detail: str

    @property
    def status(self) -> ChainStatus:
        return ChainStatus.INCOMPLETE if self.defect is Defect.MISSING else ChainStatus.BROKEN


@dataclass(frozen=True, slots=True)
class SessionVerdict:
    """Whether one session's events can be trusted: every link from the stream's
    start through its ``session.ended`` holds (and the link out of it, when stored)."""

    session_id: UUID
    status: ChainStatus
    first_seq: int | None
    """The seq of the session's first event (its ``session.started``)."""
    end_seq: int | None
    """The seq of its ``session.ended``; ``None`` when none is stored."""
    events: int
    finding: Finding | None = None
    """The first finding that spoils the session, if one does."""
    detail: str | None = None
    """Why the session is incomplete when no finding says so."""


@dataclass(frozen=True, slots=True)
class ChainAudit:
    """The state of a stream's audit after the records seen so far (fold it with
    ``audit_record``)."""

    stream_id: str
    session_id: UUID | None = None
    """A session to follow (``None``: none)."""
    events_checked: int = 0
    last_seq: int = 0
    last_hash: str = GENESIS_HASH
    first_broken: Finding | None = None
    first_gap: Finding | None = None
    findings: tuple[Finding, ...] = ()
    """The first ``MAX_KEPT_FINDINGS`` findings, in seq order."""
    findings_total: int = 0
    session_first_seq: int | None = None
    session_end_seq: int | None = None
    session_events: int = 0

    @property
    def status(self) -> ChainStatus:
        if self.first_broken is not None:
            return ChainStatus.BROKEN
        if self.first_gap is not None:
            return ChainStatus.INCOMPLETE
        return ChainStatus.VERIFIED

    @property
    def headline(self) -> Finding | None:
        """The finding the status is about: the first of the worst kind."""
        return self.first_broken or self.first_gap

    def session_verdict(self) -> SessionVerdict:
        """The verdict on the followed session."""
        if self.session_id is None:
            raise ValueError(f"the audit of {self.stream_id} follows no session")
        verdict = SessionVerdict(
            self.session_id,
            ChainStatus.VERIFIED,
            self.session_first_seq,
            self.session_end_seq,
            self.session_events,
        )
        spoiler = self._session_spoiler()
        if spoiler is not None:
            return replace(verdict, status=spoiler.status, finding=spoiler)
        if self.session_first_seq is None:
            detail = "no stored event belongs to this session"
            return replace(verdict, status=ChainStatus.INCOMPLETE, detail=detail)
        if self.session_end_seq is None:
            detail = "no session.ended is stored: the session is still open, or its end is missing"
            return replace(verdict, status=ChainStatus.INCOMPLETE, detail=detail)
        return verdict

    def _session_spoiler(self) -> Finding | None:
        # Findings arrive in seq order, so the first of each kind is the lowest: if
        # it lies beyond the session, every other one does too.  The link out of
        # session.ended counts: only its successor's prev_hash vouches for its hash.
        end = self.session_end_seq if self.session_end_seq is not None else self.last_seq
        broken, gap = self.first_broken, self.first_gap
        if broken is not None and (
            broken.seq <= end or (broken.seq == end + 1 and broken.defect is Defect.UNLINKED)
        ):
            return broken
        if gap is not None and gap.seq <= end:
            return gap
        return None


def audit_record(audit: ChainAudit, record: StoredRecord) -> ChainAudit:
    """The audit after one more stored record of the stream, given in seq order."""
    if record.seq <= audit.last_seq:
        detail = f"given out of order, after seq {audit.last_seq}"
        out_of_order = Finding(Defect.OUT_OF_ORDER, record.seq, record.event_id, detail)
        return _with_findings(audit, [out_of_order])
    body = _parse(record.body)
    findings: list[Finding] = []
    if record.seq > audit.last_seq + 1:
        missing = f"events {audit.last_seq + 1}..{record.seq - 1} are missing"
        findings.append(Finding(Defect.MISSING, record.seq, record.event_id, missing))
    problem = _link_problem(audit, record, body)
    if problem is not None:
        findings.append(Finding(problem[0], record.seq, record.event_id, problem[1]))
    # Re-anchor on the stored hash whatever was wrong: an event altered in place is
    # then one finding, and its successor is judged on its own link.
    advanced = replace(
        audit,
        events_checked=audit.events_checked + 1,
        last_seq=record.seq,
        last_hash=record.hash,
    )
    return _with_findings(_follow_session(advanced, record.seq, body), findings)


def _link_problem(
    audit: ChainAudit, record: StoredRecord, body: dict[str, Any] | None
) -> tuple[Defect, str] | None:
    if sha256_hex(record.body) != record.hash:
        return Defect.ALTERED, "the stored event does not hash to its stored hash: it was altered"
    if body is None or not isinstance(body.get("prev_hash"), str):
        return Defect.NOT_AN_EVENT, "the stored bytes are not an event"
    body_seq = body.get("seq")
    if type(body_seq) is not int or body_seq != record.seq:
        return Defect.RENUMBERED, (
            f"the hashed event says it is seq {body_seq}: stored seqs were renumbered or swapped"
        )
    if record.seq == audit.last_seq + 1 and body["prev_hash"] != audit.last_hash:
        if record.seq == 1:
            return Defect.UNLINKED, "prev_hash of seq 1 is not the genesis hash (64 zeros)"
        return Defect.UNLINKED, (
            f"prev_hash is not the stored hash of seq {audit.last_seq}: "
            f"seq {audit.last_seq} or this event was altered and rehashed"
        )
    column = _column_mismatch(audit.stream_id, record, body)
    if column is not None:
        return Defect.COLUMN_MISMATCH, (
            f"the stored {column} column disagrees with the hashed event: it was altered"
        )
    return None


def _column_mismatch(stream_id: str, record: StoredRecord, body: dict[str, Any]) -> str | None:
    """The first stored column that disagrees with the hashed body, if any."""
    if body["prev_hash"] != record.prev_hash:
        return "prev_hash"
    if _uuid(body.get("event_id")) != record.event_id:
        return "event_id"
    if body.get("device_id") != record.device_id:
        return "device_id"
    if is_device_stream(stream_id) and record.device_id != stream_id:
        return "stream_id"
    if body.get("type") != record.type:
        return "type"
    if _timestamp(body.get("occurred_at")) != record.occurred_at:
        return "occurred_at"
    return None


def _follow_session(audit: ChainAudit, seq: int, body: dict[str, Any] | None) -> ChainAudit:
    """Track the followed session's span: its first event through its session.ended."""
    if audit.session_id is None or audit.session_end_seq is not None:
        return audit
    names_session = body is not None and session_of(body) == audit.session_id
    first = audit.session_first_seq
    if first is None and not names_session:
        return audit
    ended = names_session and body is not None and body.get("type") == "session.ended"
    return replace(
        audit,
        session_first_seq=seq if first is None else first,
        session_end_seq=seq if ended else None,
        session_events=audit.session_events + 1,
    )


def _with_findings(audit: ChainAudit, findings: list[Finding]) -> ChainAudit:
    if not findings:
        return audit
    first_broken, first_gap = audit.first_broken, audit.first_gap
    for finding in findings:
        if finding.defect is Defect.MISSING:
            first_gap = first_gap or finding
        else:
            first_broken = first_broken or finding
    room = MAX_KEPT_FINDINGS - len(audit.findings)
    return replace(
        audit,
        first_broken=first_broken,
        first_gap=first_gap,
        findings=audit.findings + tuple(findings[: max(room, 0)]),
        findings_total=audit.findings_total + len(findings),
    )


def session_of(body: dict[str, Any]) -> UUID | None:
    """The session an event's body names in ``data.session_id``, if it names one."""
    data = body.get("data")
    return _uuid(data.get("session_id")) if isinstance(data, dict) else None


def body_names_session(body: bytes, session_id: UUID) -> bool:
    """Whether a stored body names ``session_id`` (a cheap byte test first: canonical
    bodies of other events mostly lack the key altogether)."""
    if b'"session_id"' not in body:
        return False
    parsed = _parse(body)
    return parsed is not None and session_of(parsed) == session_id


def _parse(body: bytes) -> dict[str, Any] | None:
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return parsed if isinstance(parsed, dict) else None


def _uuid(value: object) -> UUID | None:
    if not isinstance(value, str):
        return None
    try:
        return UUID(value)
    except ValueError:
        return None


def _timestamp(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None
