"""Session audits as CSV, streamed: rows leave as the database yields them, so a
million sessions take the memory of one chunk."""

import csv
import io
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any, Final

from services.api.models import SessionOut

CSV_COLUMNS: Final = tuple(SessionOut.model_fields)
_ROWS_PER_WRITE: Final = 500


def csv_lines(rows: Iterable[Any]) -> Iterator[str]:
    """The header, then the rows, ``_ROWS_PER_WRITE`` to a chunk of text."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")  # RFC 4180
    writer.writerow(CSV_COLUMNS)
    pending = 0
    for row in rows:
        writer.writerow([_cell(getattr(row, column)) for column in CSV_COLUMNS])
        pending += 1
        if pending == _ROWS_PER_WRITE:
            yield _drain(buffer)
            pending = 0
    yield _drain(buffer)


def _cell(value: Any) -> Any:
    if value is None:
        return ""  # reconciled pending, session not ended: an empty cell
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z") if value.tzinfo else value.isoformat() + "Z"
    return value


def _drain(buffer: io.StringIO) -> str:
    text = buffer.getvalue()
    buffer.seek(0)
    buffer.truncate()
    return text
