"""Session audits as CSV, streamed: rows leave as the database yields them, so a
million sessions take the memory of one chunk."""

import csv
import io
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from itertools import islice
from typing import Any, Final

from services.api.models import SessionOut

CSV_COLUMNS: Final = tuple(SessionOut.model_fields)
"""The columns of a session in the JSON API, in its order (rows come in this order)."""
_ROWS_PER_WRITE: Final = 500


def _moment(value: datetime | None) -> str | None:
    if value is None:
        return None  # not ended yet: an empty cell
    aware = value if value.tzinfo else value.replace(tzinfo=UTC)  # SQLite drops the zone
    return aware.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _flag(value: bool | None) -> str | None:
    return None if value is None else ("true" if value else "false")  # None: pending


# One converter per column, chosen once: exporting a million rows, per-cell type tests
# were most of the work.  csv writes None as an empty cell.
_CONVERT: Final[dict[str, Callable[[Any], Any]]] = {
    "started_at": _moment, "ended_at": _moment, "reconciled": _flag,
}  # fmt: skip
_CONVERTED: Final = tuple(
    (index, _CONVERT[column]) for index, column in enumerate(CSV_COLUMNS) if column in _CONVERT
)


def csv_lines(rows: Iterable[Any]) -> Iterator[str]:
    """The header, then the rows (tuples in ``CSV_COLUMNS`` order), ``_ROWS_PER_WRITE``
    to a chunk of text."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")  # RFC 4180
    writer.writerow(CSV_COLUMNS)
    iterator = iter(rows)
    while chunk := list(islice(iterator, _ROWS_PER_WRITE)):
        writer.writerows(_converted(row) for row in chunk)
        yield _drain(buffer)
    yield _drain(buffer)


def _converted(row: Any) -> list[Any]:
    cells = list(row)
    for index, convert in _CONVERTED:
        cells[index] = convert(cells[index])
    return cells


def _drain(buffer: io.StringIO) -> str:
    text = buffer.getvalue()
    buffer.seek(0)
    buffer.truncate()
    return text
