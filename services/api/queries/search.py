"""Search terms as index range scans: a prefix of a key column, never ``LIKE '%x%'``
over a million rows."""

from typing import Any

from sqlalchemy import ColumnElement, and_


def prefix_of(column: Any, text: str) -> ColumnElement[bool]:
    """Rows whose ``column`` starts with ``text``: the range ``[text, successor)``,
    which a B-tree index on the column answers and the planner estimates from its
    histogram.  Ids are ASCII and the read models compare them byte-wise (SQLite;
    PostgreSQL initialised with the C locale), where that range is exactly the prefix."""
    successor = text[:-1] + chr(ord(text[-1]) + 1)
    return and_(column >= text, column < successor)
