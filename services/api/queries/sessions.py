"""Session audits as a principal may see them, newest first."""

from collections.abc import Iterator
from datetime import datetime
from typing import Any, Final

from sqlalchemy import Connection, Select, false, or_, select, tuple_

from services.api.access import Principal
from services.api.models import SessionOut
from services.api.queries.evidence import (
    Evidence,
    SessionSpan,
    collect,
    seals_kept,
    with_evidence,
)
from services.api.queries.scope import scoped
from services.api.queries.search import prefix_of
from services.api.queries.tables import READ, aware, utc

_sessions = READ.sessions
COVERAGE_DECIMALS: Final = 2
"""Places ``coverage_pct`` is rounded to in the export."""
SESSION_COLUMNS: Final = tuple(_sessions.c[name] for name in SessionOut.model_fields)
"""The columns of ``SessionOut``, in its order (the CSV export's first columns too)."""


def session_query(
    principal: Principal,
    *,
    device_id: str | None = None,
    clinic_id: str | None = None,
    started_from: datetime | None = None,
    started_to: datetime | None = None,
    q: str | None = None,
    flagged: bool = False,
) -> Select[Any]:
    """``q``: sessions whose id (lower case), device id (upper case), or cartridge id or
    lot (as given, or upper case) starts with it; ``flagged``: only those whose counts
    did not reconcile or whose chain is broken."""
    query = select(*SESSION_COLUMNS).where(scoped(principal, _sessions.c.clinic_id))
    if q:
        query = query.where(
            or_(
                prefix_of(_sessions.c.session_id, q.lower()),
                prefix_of(_sessions.c.device_id, q.upper()),
                *(
                    prefix_of(column, term)
                    for column in (_sessions.c.cartridge_id, _sessions.c.lot)
                    for term in dict.fromkeys((q, q.upper()))
                ),
            )
        )
    if flagged:
        query = query.where(
            or_(_sessions.c.reconciled == false(), _sessions.c.chain_status == "broken")
        )
    if device_id is not None:
        query = query.where(_sessions.c.device_id == device_id)
    if clinic_id is not None:
        query = query.where(_sessions.c.clinic_id == clinic_id)
    if started_from is not None:
        query = query.where(_sessions.c.started_at >= utc(started_from))
    if started_to is not None:
        query = query.where(_sessions.c.started_at < utc(started_to))
    return query


def list_sessions(
    connection: Connection, query: Select[Any], after: tuple[datetime, str] | None, limit: int
) -> list[SessionOut]:
    if after is not None:
        started_at, session_id = after
        query = query.where(
            tuple_(_sessions.c.started_at, _sessions.c.session_id) < (utc(started_at), session_id)
        )
    return [session_out(row) for row in connection.execute(newest_first(query).limit(limit + 1))]


def find_session(
    connection: Connection, principal: Principal, session_id: str
) -> tuple[SessionOut, dict[str, Any]] | None:
    """The session and its full audit document, or ``None`` outside the scope."""
    row = connection.execute(
        select(*SESSION_COLUMNS, _sessions.c.audit).where(
            _sessions.c.session_id == session_id, scoped(principal, _sessions.c.clinic_id)
        )
    ).first()
    return None if row is None else (session_out(row), row.audit)


def newest_first(query: Select[Any]) -> Select[Any]:
    """The order of every session listing: the API's pages, the dashboard, the export."""
    return query.order_by(_sessions.c.started_at.desc(), _sessions.c.session_id.desc())


def stream_export(
    connection: Connection, query: Select[Any], chunk: int
) -> Iterator[tuple[list[tuple[Any, SessionSpan]], Evidence]]:
    """Every session of ``query`` with its evidence, newest first, ``chunk`` at a time;
    rows come from a server-side cursor, so memory stays flat however many match."""
    ordered = newest_first(with_evidence(connection, query))
    result = connection.execution_options(stream_results=True, yield_per=chunk).execute(ordered)
    for rows in result.partitions(chunk):
        yield collect(connection, rows)


def session_evidence(
    connection: Connection, principal: Principal, session_id: str
) -> tuple[SessionSpan, Evidence] | None:
    """One session's place in the chain and its evidence (``None`` outside the scope),
    read as the export reads them."""
    query = session_query(principal).where(_sessions.c.session_id == session_id)
    sessions, evidence = collect(
        connection, connection.execute(with_evidence(connection, query)).all()
    )
    return None if not sessions else (sessions[0][1], evidence)


def session_out(row: Any) -> SessionOut:
    return SessionOut(
        session_id=row.session_id,
        device_id=row.device_id,
        clinic_id=row.clinic_id,
        treatment_area=row.treatment_area,
        area_cm2=row.area_cm2,
        started_at=aware(row.started_at),
        ended_at=aware(row.ended_at),
        cores_counted=row.cores_counted,
        cores_reported=row.cores_reported,
        reconciled=row.reconciled,
        coverage_pct=row.coverage_pct,
        chain_status=row.chain_status,
    )


# -- the export formatted by PostgreSQL -------------------------------------------------
# ``COPY (SELECT …) TO STDOUT (FORMAT csv)`` writes the cells exactly as
# ``csv_export.export_cells`` would: times as ``isoformat`` with ``Z``, flags as
# ``true``/``false``, floats as Python's ``repr``, coverage to two decimals, and every
# empty text as NULL (COPY quotes an empty string, csv.writer does not).

_FLOAT8: Final = (
    # PostgreSQL prints the shortest exact digits as Python's repr does, but an
    # integral value without its ".0".
    "CASE WHEN {0} IS NULL THEN NULL WHEN {0}::text ~ '[.eEn]' THEN {0}::text "
    "ELSE {0}::text || '.0' END"
)
_MOMENT: Final = (
    "to_char({0} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS') || CASE "
    "WHEN extract(microseconds FROM {0}) = 1000000 * floor(extract(second FROM {0})) "
    "THEN '' ELSE to_char({0} AT TIME ZONE 'UTC', '.US') END || 'Z'"
)
_INSTALLED_DIAMETER: Final = (
    # The newest ``cartridge.installed`` of the cartridge before the session's end,
    # among those ``evidence.collect`` gathers: before its start, or during it when
    # it used several cartridges.
    "(SELECT convert_from(e.body, 'UTF8')::jsonb -> 'data' -> 'core_diameter_mm' "
    "FROM events e WHERE e.stream_id = s.device_id AND e.type = 'cartridge.installed' "
    "AND e.seq < coalesce(span.ended_seq, 9223372036854775807) "
    "AND (e.seq < span.started_seq "
    "OR (jsonb_array_length(span.cartridge_ids) > 1 AND e.seq > span.started_seq)) "
    "AND convert_from(e.body, 'UTF8')::jsonb -> 'data' ->> 'cartridge_id' = cartridge.id "
    "ORDER BY e.seq DESC LIMIT 1)"
)
_SPAN: Final = (
    # One read of each session's audit document for the three members the export
    # needs: every ``->>`` on the column would decompress the whole document again.
    "CROSS JOIN LATERAL jsonb_to_record(s.audit) "
    "AS span (started_seq bigint, ended_seq bigint, cartridge_ids jsonb)"
)


def copy_export_statement(connection: Connection, query: Select[Any]) -> tuple[str, Any]:
    """``COPY … TO STDOUT (FORMAT csv)`` of ``query``'s sessions (its filters and
    scope, newest first) in the export's columns, and its parameters, for psycopg."""
    seal_status = "NULL"
    if seals_kept(connection):
        seal_status = (
            "CASE WHEN span.ended_seq IS NULL THEN NULL WHEN coalesce((SELECT max(z.seq) "
            "FROM seals z WHERE z.stream_id = s.device_id), 0) >= span.ended_seq "
            "THEN 'signed' ELSE 'unsigned' END"
        )
    diameter = _FLOAT8.format("(installed.diameter)::float8")
    cells = (
        "NULLIF(s.session_id, '')",
        "NULLIF(s.device_id, '')",
        "NULLIF(s.clinic_id, '')",
        "NULLIF(s.treatment_area, '')",
        _FLOAT8.format("s.area_cm2"),
        _MOMENT.format("s.started_at"),
        _MOMENT.format("s.ended_at"),
        "s.cores_counted",
        "s.cores_reported",
        "CASE WHEN s.reconciled THEN 'true' WHEN NOT s.reconciled THEN 'false' END",
        f"round(s.coverage_pct::numeric, {COVERAGE_DECIMALS})",
        "NULLIF(s.chain_status, '')",
        "NULLIF(array_to_string(ARRAY(SELECT jsonb_array_elements_text(span.cartridge_ids)), "
        "';'), '')",
        "NULLIF((SELECT string_agg(coalesce(" + diameter + ", ''), ';' ORDER BY cartridge.n) "
        "FROM jsonb_array_elements_text(span.cartridge_ids) WITH ORDINALITY "
        f"AS cartridge (id, n) LEFT JOIN LATERAL (SELECT {_INSTALLED_DIAMETER} AS diameter) "
        "installed ON true), '')",
        "span.started_seq",
        "span.ended_seq",
        "(SELECT e.hash FROM events e WHERE e.stream_id = s.device_id AND e.seq = span.ended_seq)",
        seal_status,
    )
    # The scoped, filtered query keeps its WHERE; PostgreSQL flattens it into the outer
    # query, so the newest-first order still walks ``read_sessions_started``.
    rows = query.with_only_columns(*SESSION_COLUMNS, _sessions.c.audit).select_from(_sessions)
    inner = rows.compile(dialect=connection.dialect)
    statement = (
        f"COPY (SELECT {', '.join(cells)} FROM ({inner}) AS s {_SPAN} "  # noqa: S608 - no input
        "ORDER BY s.started_at DESC, s.session_id DESC) TO STDOUT (FORMAT csv)"
    )
    return statement, inner.params
