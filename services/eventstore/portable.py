"""Queries whose SQL is the same for SQLite and PostgreSQL, shared by both adapters."""

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final

from services.eventstore.append_plan import EventRow, StoredLink, StreamKey
from services.eventstore.ports import Gap, StreamHead

_COUNT_EVENTS: Final = "SELECT count(*) FROM events"
# A loose index scan: one probe of the (stream_id, seq) index per stream, however many
# events each holds, instead of reading every entry to DISTINCT them.
_STREAM_IDS: Final = (
    "WITH RECURSIVE streams (stream_id) AS ("
    " SELECT min(stream_id) FROM events"
    " UNION ALL"
    " SELECT (SELECT min(e.stream_id) FROM events e WHERE e.stream_id > s.stream_id)"
    " FROM streams s WHERE s.stream_id IS NOT NULL"
    ") SELECT stream_id FROM streams WHERE stream_id IS NOT NULL"
)


_HEAD: Final = "SELECT seq, hash FROM events WHERE stream_id = {stream} ORDER BY seq DESC LIMIT 1"
# Gaps above a cut-off, in one pass over the seqs the platform has from the cut-off
# on, stored or held (window functions: PostgreSQL, and SQLite from 3.25).  Held
# events wait past a hole, so the holes below and between them are what the device
# must resend; UNION (not ALL) counts a seq once however many candidates wait for it.
# ``lag`` gives each seq its predecessor, the first one's predecessor being the
# cut-off itself, so a missing start shows up like any other hole.
_FIND_GAPS: Final = """
WITH known (seq) AS (
    SELECT seq FROM events WHERE stream_id = {stream} AND seq > {after}
    UNION
    SELECT seq FROM held_events WHERE stream_id = {stream} AND seq > {after}
), ordered AS (
    SELECT seq, lag(seq, 1, {after}) OVER (ORDER BY seq) AS prev_seq FROM known
)
SELECT prev_seq + 1, seq - 1 FROM ordered WHERE seq > prev_seq + 1 ORDER BY seq
"""
# The seq before the first hole; with no hole, the last stored seq; with nothing
# stored above the cut-off, the cut-off itself.  The window runs in index order, so
# the first subquery stops at the first hole and the second is one index probe.
_CONTIGUOUS_THROUGH: Final = """
WITH stored AS (
    SELECT seq, lag(seq, 1, {after}) OVER (ORDER BY seq) AS prev_seq
    FROM events
    WHERE stream_id = {stream} AND seq > {after}
)
SELECT coalesce(
    (SELECT prev_seq FROM stored WHERE seq > prev_seq + 1 ORDER BY seq LIMIT 1),
    (SELECT max(seq) FROM events WHERE stream_id = {stream} AND seq > {after}),
    {after}
)
"""


# What chain custody needs besides the batch's neighbours, in one statement for
# every stream of the batch: each stream's stored head (one index probe: max over
# the (stream_id, seq) key), and its held events from the batch's first seq on, each
# with its stored successor (only a stream stored before custody can have one).
# ``{wanted}`` yields (stream_id, from_seq) rows, spelled in each driver's own way.
# Head rows are the ones with no ``prev_hash``.
CUSTODY: Final = """
WITH wanted (stream_id, from_seq) AS ({wanted})
SELECT w.stream_id, e.seq, e.hash, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL
FROM wanted w
JOIN events e ON e.stream_id = w.stream_id
    AND e.seq = (SELECT max(m.seq) FROM events m WHERE m.stream_id = w.stream_id)
UNION ALL
SELECT h.stream_id, h.seq, h.hash, h.prev_hash, h.device_id, h.event_id, h.type,
    h.occurred_at, h.received_at, h.body, s.hash, s.prev_hash
FROM wanted w
JOIN held_events h ON h.stream_id = w.stream_id AND h.seq >= w.from_seq
LEFT JOIN events s ON s.stream_id = h.stream_id AND s.seq = h.seq + 1
"""


@dataclass(slots=True)
class Custody:
    """What ``CUSTODY`` found, as ``plan_append`` takes it."""

    heads: dict[str, StreamHead] = field(default_factory=dict)
    held: list[EventRow] = field(default_factory=list)
    successors: dict[StreamKey, StoredLink] = field(default_factory=dict)

    @classmethod
    def of_rows(
        cls, rows: Iterable[tuple[Any, ...]], held_row: Callable[[tuple[Any, ...]], EventRow]
    ) -> "Custody":
        """Sort ``CUSTODY``'s rows; ``held_row`` reads a held event in the driver's types."""
        custody = cls()
        for row in rows:
            stream_id, seq, event_hash, prev_hash = row[:4]
            if prev_hash is None:
                custody.heads[stream_id] = StreamHead(stream_id, seq, event_hash)
                continue
            custody.held.append(held_row(row[:10]))
            if row[10] is not None:
                custody.successors[(stream_id, seq + 1)] = StoredLink(row[10], row[11])
        return custody


class PortableQueries:
    """Mixed into each adapter, whose DB-API connection is ``self._connection`` and
    whose driver spells the named parameters ``{stream}`` and ``{after}`` as
    ``PARAMETERS`` says."""

    _connection: Any
    PARAMETERS: ClassVar[dict[str, str]]

    def find_gaps(self, stream_id: str, after_seq: int = 0) -> list[Gap]:
        rows = self._connection.execute(
            _FIND_GAPS.format_map(self.PARAMETERS), {"stream_id": stream_id, "after_seq": after_seq}
        )
        return [Gap(stream_id, from_seq, to_seq) for from_seq, to_seq in rows]

    def contiguous_through(self, stream_id: str, after_seq: int = 0) -> int:
        through: int
        [(through,)] = self._connection.execute(
            _CONTIGUOUS_THROUGH.format_map(self.PARAMETERS),
            {"stream_id": stream_id, "after_seq": after_seq},
        ).fetchall()
        return through

    def head(self, stream_id: str) -> StreamHead | None:
        row = self._connection.execute(
            _HEAD.format_map(self.PARAMETERS), {"stream_id": stream_id}
        ).fetchone()
        return None if row is None else StreamHead(stream_id, row[0], row[1])

    def count_events(self) -> int:
        row = self._connection.execute(_COUNT_EVENTS).fetchone()
        return int(row[0]) if row else 0

    def stream_ids(self) -> list[str]:
        return [row[0] for row in self._connection.execute(_STREAM_IDS).fetchall()]
