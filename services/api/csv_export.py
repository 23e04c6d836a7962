"""Session audits as CSV, streamed: rows leave a chunk at a time as the database
yields them, so a million sessions take the memory of one chunk.

Rows come newest first (start time, then session id, both descending): the order of
the sessions page and ``GET /api/v1/sessions``.  ``coverage_pct`` is rounded to
``COVERAGE_DECIMALS`` places; every other number is as stored.  The evidence
columns are stored with the session by the projector (``read_sessions``), except the
seal status, which is read from the store's seals at export time.  PostgreSQL also
stores the area, the times and the coverage as this module prints them (generated
columns), and its export reads those.

On PostgreSQL the database formats the rows (``COPY (SELECT …) TO STDOUT (FORMAT
csv)``, ``queries.sessions.copy_export_statement``) and its blocks are passed on
gathered into pieces of ``_PIECE`` bytes; on SQLite each row is formatted here.  The
two give the same bytes (``tests/integration/test_csv_export_copy.py``)."""

import csv
import io
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy import Connection, Select

from services.api.models import SessionOut
from services.api.queries import sessions as session_queries
from services.eventstore.copy_out import copy_out
from services.projections.tables import COVERAGE_DECIMALS

_PIECE: Final = 256 * 1024
"""COPY sends a message per row: they leave gathered, one hand-off per piece."""
EVIDENCE_COLUMNS: Final = (
    "cartridge_ids", "core_diameter_mm", "first_seq", "last_seq", "last_hash", "seal_status",
)  # fmt: skip
CSV_COLUMNS: Final = (*SessionOut.model_fields, *EVIDENCE_COLUMNS)
"""A session's columns in the JSON API, then what an auditor checks it against."""


def _moment(value: datetime | None) -> str | None:
    if value is None:
        return None  # not ended yet: an empty cell
    aware = value if value.tzinfo else value.replace(tzinfo=UTC)  # SQLite drops the zone
    return aware.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _flag(value: bool | None) -> str | None:
    return None if value is None else ("true" if value else "false")  # None: pending


def export_cells(row: Sequence[Any]) -> list[Any]:
    """One row of ``queries.sessions.stream_export``: the ``SessionOut`` columns in
    order, then the evidence as stored with the session.  csv writes ``None`` as an
    empty cell."""
    (
        session_id, device_id, clinic_id, treatment_area, area_cm2, started_at, ended_at,
        cores_counted, cores_reported, reconciled, coverage_pct, chain_status,
        cartridge_ids, core_diameters_mm, started_seq, ended_seq, ended_hash, seal_status,
    ) = row  # fmt: skip
    return [
        session_id, device_id, clinic_id, treatment_area, area_cm2,
        _moment(started_at), _moment(ended_at), cores_counted, cores_reported,
        _flag(reconciled), f"{coverage_pct:.{COVERAGE_DECIMALS}f}", chain_status,
        cartridge_ids, core_diameters_mm, started_seq, ended_seq, ended_hash, seal_status,
    ]  # fmt: skip


def csv_lines(chunks: Iterable[Sequence[Sequence[Any]]]) -> Iterator[str]:
    """The header, then each chunk of rows (``queries.sessions.stream_export``) as one
    piece of text."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")  # RFC 4180
    writer.writerow(CSV_COLUMNS)
    for rows in chunks:
        writer.writerows(map(export_cells, rows))
        yield _drain(buffer)
    yield _drain(buffer)


def _drain(buffer: io.StringIO) -> str:
    text = buffer.getvalue()
    buffer.seek(0)
    buffer.truncate()
    return text


def export_csv(connection: Connection, query: Select[Any], chunk: int) -> Iterator[str | bytes]:
    """The header, then every session of ``query`` (filters and scope), newest first:
    formatted by PostgreSQL where the database is PostgreSQL, else here."""
    if connection.dialect.name != "postgresql":
        yield from csv_lines(session_queries.stream_export(connection, query, chunk))
        return
    statement, parameters = session_queries.copy_export_statement(connection, query)
    header = io.StringIO()
    csv.writer(header, lineterminator="\r\n").writerow(CSV_COLUMNS)
    yield header.getvalue()
    # A million rows of subqueries cost enough for PostgreSQL to JIT-compile and
    # optimise the plan first: seconds before the first row, for nothing gained on a
    # plan made of index probes.  Only for this transaction.
    for piece in copy_out(connection, statement, parameters, _PIECE, ["SET LOCAL jit = off"]):
        # COPY ends rows with LF; RFC 4180 with CRLF.  No cell holds a line break
        # (ids, enums, numbers, times), so every LF ends a row.
        yield piece.replace(b"\n", b"\r\n")
