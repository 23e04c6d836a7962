"""Queries whose SQL is the same for SQLite and PostgreSQL, shared by both adapters."""

from typing import Any, ClassVar, Final

from services.eventstore.ports import Gap

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


# Gaps above a cut-off, in one pass over the (stream_id, seq) key from the cut-off on
# (window functions: PostgreSQL, and SQLite from 3.25).
# ``lag`` gives each stored seq its stored predecessor, the first one's predecessor
# being the cut-off itself, so a missing start shows up like any other hole.
_FIND_GAPS: Final = """
WITH stored AS (
    SELECT seq, lag(seq, 1, {after}) OVER (ORDER BY seq) AS prev_seq
    FROM events
    WHERE stream_id = {stream} AND seq > {after}
)
SELECT prev_seq + 1, seq - 1 FROM stored WHERE seq > prev_seq + 1 ORDER BY seq
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

    def count_events(self) -> int:
        row = self._connection.execute(_COUNT_EVENTS).fetchone()
        return int(row[0]) if row else 0

    def stream_ids(self) -> list[str]:
        return [row[0] for row in self._connection.execute(_STREAM_IDS).fetchall()]
