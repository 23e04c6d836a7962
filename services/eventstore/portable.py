"""Queries whose SQL is the same for SQLite and PostgreSQL, shared by both adapters."""

from typing import Any, Final

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


class PortableQueries:
    """Mixed into each adapter, whose DB-API connection is ``self._connection``."""

    _connection: Any

    def count_events(self) -> int:
        row = self._connection.execute(_COUNT_EVENTS).fetchone()
        return int(row[0]) if row else 0

    def stream_ids(self) -> list[str]:
        return [row[0] for row in self._connection.execute(_STREAM_IDS).fetchall()]
