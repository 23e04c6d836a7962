"""Search terms as index range scans: a prefix of a key column, never ``LIKE '%x%'``
over a million rows."""

from typing import Any

from sqlalchemy import ColumnElement, and_, literal


def prefix_of(column: Any, text: str) -> ColumnElement[bool]:
    """Rows whose ``column`` starts with ``text``: the range ``[text, successor)``,
    which a B-tree index on the column answers and the planner estimates from its
    histogram.  Ids are ASCII and the read models compare them byte-wise (SQLite;
    PostgreSQL initialised with the C locale), where that range is exactly the prefix.

    The bounds are written into the statement (as escaped literals; terms are ids
    anyway), not sent as parameters: a statement run often is prepared by the driver,
    and PostgreSQL then planned it for any prefix at all, as if it matched a handful
    of rows, so a short one, matching every device, read and sorted all of them (85 ms
    instead of 1, BENCHMARKS.md, API)."""
    successor = text[:-1] + chr(ord(text[-1]) + 1)
    return and_(column >= _written(text), column < _written(successor))


def _written(text: str) -> ColumnElement[str]:
    return literal(text, literal_execute=True)
