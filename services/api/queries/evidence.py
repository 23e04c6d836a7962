"""What an auditor checks a session against, read from the event store's own tables:
the stored hashes at its ends, the core diameter of each cartridge it used, and how
far the device's seals reach.  Read with the sessions themselves, by subqueries on the
store's primary key, so an export of a million sessions stays one streamed query."""

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import orjson
from sqlalchemy import ColumnElement, Connection, Select, and_, func, inspect, or_, select, true

from schemas.streams import device_stream
from services.api.models import SealStatusName
from services.api.queries.tables import READ, seals, stored_events

_INSTALLED: Final = "cartridge.installed"
_sessions: Final = READ.sessions


@dataclass(frozen=True, slots=True)
class SessionSpan:
    """Where a session lies in its device's stream, from its audit document."""

    device_id: str
    first_seq: int
    last_seq: int | None
    """``None`` while the session is open."""
    cartridge_ids: tuple[str, ...]

    @property
    def stream_id(self) -> str:
        return device_stream(self.device_id)


@dataclass(frozen=True, slots=True)
class Evidence:
    """The facts gathered for a batch of sessions."""

    hashes: Mapping[tuple[str, int], str]
    """Stored hash by (stream, seq), at each session's first and last seq."""
    installs: Mapping[tuple[str, str], Sequence[tuple[int, float]]]
    """By (stream, cartridge): each ``cartridge.installed`` as (seq, core diameter)."""
    sealed_through: Mapping[str, int] | None
    """The highest sealed seq of each stream that has a seal; ``None``: the store keeps
    no seals (a schema from before them)."""

    def first_hash(self, span: SessionSpan) -> str | None:
        return self.hashes.get((span.stream_id, span.first_seq))

    def last_hash(self, span: SessionSpan) -> str | None:
        return None if span.last_seq is None else self.hashes.get((span.stream_id, span.last_seq))

    def core_diameter(self, span: SessionSpan, cartridge_id: str) -> float | None:
        """The diameter of the cartridge's newest install before the session's end
        (a cartridge may be swapped in mid-session)."""
        found = None
        for seq, diameter in self.installs.get((span.stream_id, cartridge_id), ()):
            if span.last_seq is None or seq < span.last_seq:
                found = diameter
        return found

    def seal_status(self, span: SessionSpan) -> SealStatusName | None:
        """``signed`` when a stored seal reaches the session's end: each hash covers
        its ``prev_hash``, so one seal vouches for the whole stream up to its seq."""
        if self.sealed_through is None or span.last_seq is None:
            return None
        reach = self.sealed_through.get(span.stream_id, 0)
        return "signed" if reach >= span.last_seq else "unsigned"


def with_evidence(connection: Connection, sessions: Select[Any]) -> Select[Any]:
    """``sessions`` (rows of the read model) with each one's place in its stream and
    its evidence, as correlated subqueries on the store's primary key: the hashes at its
    ends, the newest ``cartridge.installed`` before its start (the cartridge it began
    with), and how far its device's seals reach when the store keeps seals."""
    started = _sessions.c.audit["started_seq"].as_integer()
    ended = _sessions.c.audit["ended_seq"].as_integer()
    # A device's own stream is named by its id (``schemas.streams.device_stream``).
    own = stored_events.c.stream_id == _sessions.c.device_id
    columns: list[Any] = [
        # Three members, not the whole document: decoding it was most of an export's time.
        started.label("span_first_seq"),
        ended.label("span_last_seq"),
        _sessions.c.audit["cartridge_ids"].label("span_cartridge_ids"),
        _hash_at(own, started).label("evidence_first_hash"),
        _hash_at(own, ended).label("evidence_last_hash"),
        select(stored_events.c.body)
        .where(own, stored_events.c.type == _INSTALLED, stored_events.c.seq < started)
        .order_by(stored_events.c.seq.desc())
        .limit(1)
        .scalar_subquery()
        .label("evidence_installed"),
    ]
    if seals_kept(connection):
        reach = select(func.max(seals.c.seq)).where(seals.c.stream_id == _sessions.c.device_id)
        columns.append(reach.scalar_subquery().label("evidence_sealed_through"))
    return sessions.add_columns(*columns)


def collect(
    connection: Connection, rows: Sequence[Any]
) -> tuple[list[tuple[Any, SessionSpan]], Evidence]:
    """Rows of a ``with_evidence`` query as (session columns, span) pairs, and their
    evidence.  Only a session that swapped cartridges midway costs another query."""
    sessions: list[tuple[Any, SessionSpan]] = []
    hashes: dict[tuple[str, int], str] = {}
    installs: defaultdict[tuple[str, str], list[tuple[int, float]]] = defaultdict(list)
    sealed: dict[str, int] | None = None
    swapped: list[SessionSpan] = []
    for row in rows:
        span = SessionSpan(
            row.device_id, row.span_first_seq, row.span_last_seq, tuple(row.span_cartridge_ids)
        )
        sessions.append((row, span))
        for seq, found in ((span.first_seq, row.evidence_first_hash),
                           (span.last_seq, row.evidence_last_hash)):  # fmt: skip
            if seq is not None and found is not None:
                hashes[span.stream_id, seq] = found
        if row.evidence_installed is not None:
            _add_install(installs, span.stream_id, orjson.loads(row.evidence_installed))
        if "evidence_sealed_through" in row._fields:
            sealed = {} if sealed is None else sealed
            if row.evidence_sealed_through is not None:
                sealed[span.stream_id] = int(row.evidence_sealed_through)
        if len(span.cartridge_ids) > 1:
            swapped.append(span)
    if swapped:
        _swaps(connection, swapped, installs)
    if sealed is None and seals_kept(connection):
        sealed = {}
    return sessions, Evidence(hashes, dict(installs), sealed)


def seals_kept(connection: Connection) -> bool:
    """Whether the store has a seals table: it appears with the migration that adds
    device seals, and a server may run before it."""
    return inspect(connection).has_table(seals.name)


def _hash_at(own: ColumnElement[bool], seq: Any) -> Any:
    return select(stored_events.c.hash).where(own, stored_events.c.seq == seq).scalar_subquery()


def _add_install(
    installs: defaultdict[tuple[str, str], list[tuple[int, float]]],
    stream_id: str,
    event: dict[str, Any],
) -> None:
    data = event.get("data", {})
    found = (int(event["seq"]), float(data["core_diameter_mm"]))
    if found not in installs[stream_id, data["cartridge_id"]]:
        installs[stream_id, data["cartridge_id"]].append(found)
        installs[stream_id, data["cartridge_id"]].sort()


def _swaps(
    connection: Connection,
    spans: Sequence[SessionSpan],
    installs: defaultdict[tuple[str, str], list[tuple[int, float]]],
) -> None:
    """The cartridges installed during these sessions (between start and end)."""
    windows = [
        and_(
            stored_events.c.stream_id == span.stream_id,
            stored_events.c.seq > span.first_seq,
            true() if span.last_seq is None else stored_events.c.seq < span.last_seq,
        )
        for span in spans
    ]
    rows = connection.execute(
        select(stored_events.c.stream_id, stored_events.c.body).where(
            or_(*windows), stored_events.c.type == _INSTALLED
        )
    )
    for row in rows:
        _add_install(installs, row.stream_id, orjson.loads(row.body))
