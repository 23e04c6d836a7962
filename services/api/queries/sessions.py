"""Session audits as a principal may see them, newest first."""

from collections.abc import Iterator
from datetime import datetime
from typing import Any, Final

from pydantic import TypeAdapter
from sqlalchemy import (
    Connection,
    Select,
    case,
    exists,
    false,
    literal,
    null,
    or_,
    select,
    tuple_,
)
from typing_extensions import TypedDict  # pydantic needs it before Python 3.12

from services.api.access import Principal
from services.api.models import ChainStatusName, SessionOut
from services.api.queries.evidence import (
    Evidence,
    SessionSpan,
    collect,
    seals_kept,
    with_evidence,
)
from services.api.queries.scope import scoped
from services.api.queries.search import prefix_of
from services.api.queries.tables import READ, aware, seals, utc

_sessions = READ.sessions
SESSION_COLUMNS: Final = tuple(_sessions.c[name] for name in SessionOut.model_fields)
"""The columns of ``SessionOut``, in its order (the CSV export's first columns too)."""
_SESSION_NAMES: Final = tuple(SessionOut.model_fields)


class SessionRow(TypedDict):
    """A ``SessionOut`` as a row: its fields, their types and their order (a test holds
    the two together), for writing a page without building a model a row."""

    session_id: str
    device_id: str
    clinic_id: str | None
    treatment_area: str
    area_cm2: float
    started_at: datetime
    ended_at: datetime | None
    cores_counted: int
    cores_reported: int | None
    reconciled: bool | None
    coverage_pct: float
    chain_status: ChainStatusName


class _SessionPage(TypedDict):
    items: list[SessionRow]
    next_cursor: str | None


_PAGE: Final = TypeAdapter(_SessionPage)


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
    return [session_out(row) for row in _page(connection, query, after, limit)]


def session_rows(
    connection: Connection, query: Select[Any], after: tuple[datetime, str] | None, limit: int
) -> list[SessionRow]:
    """``list_sessions`` as rows for ``page_json``: no model built or validated a row."""
    rows = []
    for row in _page(connection, query, after, limit):
        item: Any = dict(zip(_SESSION_NAMES, row, strict=True))
        item["started_at"] = aware(item["started_at"])
        item["ended_at"] = aware(item["ended_at"])
        rows.append(item)
    return rows


def page_json(rows: list[SessionRow], following: str | None) -> bytes:
    """The JSON of ``Page[SessionOut]`` over ``rows``, byte for byte, written once from
    the rows by the serializer of the same field types."""
    return _PAGE.dump_json({"items": rows, "next_cursor": following})


def _page(
    connection: Connection, query: Select[Any], after: tuple[datetime, str] | None, limit: int
) -> Iterator[Any]:
    if after is not None:
        started_at, session_id = after
        query = query.where(
            tuple_(_sessions.c.started_at, _sessions.c.session_id) < (utc(started_at), session_id)
        )
    return iter(connection.execute(newest_first(query).limit(limit + 1)))


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


EXPORT_EVIDENCE: Final = (
    _sessions.c.cartridge_ids,
    _sessions.c.core_diameters_mm,
    _sessions.c.started_seq,
    _sessions.c.ended_seq,
    _sessions.c.ended_hash,
)
"""What the export prints after the ``SessionOut`` columns, as the projector stored it
with the session (only the seal status is read from the store at export time)."""


def seal_status(connection: Connection) -> Any:
    """``signed`` when a stored seal reaches the session's end (each hash covers its
    ``prev_hash``, so one seal vouches for the stream up to its seq), else ``unsigned``;
    ``NULL`` while the session is open or when the store keeps no seals.  Read from
    ``seals`` at export time, never stored: a seal may arrive after the session ended,
    and the projector does not see seals."""
    if not seals_kept(connection):
        return null()
    sealed = exists().where(
        seals.c.stream_id == _sessions.c.device_id, seals.c.seq >= _sessions.c.ended_seq
    )
    return case(
        (_sessions.c.ended_seq.is_(None), null()),
        (sealed, literal("signed")),
        else_=literal("unsigned"),
    )


def stream_export(connection: Connection, query: Select[Any], chunk: int) -> Iterator[list[Any]]:
    """Every session of ``query`` in the export's columns (``SESSION_COLUMNS``, then
    ``EXPORT_EVIDENCE`` and the seal status), newest first, ``chunk`` rows at a time;
    rows come from a server-side cursor, so memory stays flat however many match."""
    ordered = newest_first(query.add_columns(*EXPORT_EVIDENCE, seal_status(connection)))
    result = connection.execution_options(stream_results=True, yield_per=chunk).execute(ordered)
    for rows in result.partitions(chunk):
        yield list(rows)


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
# empty text as NULL (COPY quotes an empty string, csv.writer does not).  The times,
# the area and the coverage are read as the database generated them with the row
# (``read_sessions``' ``*_cell`` columns): formatting them here cost more than the
# plain copy of the row.

EXPORT_CELLS: Final = (
    _sessions.c.area_cm2_cell,
    _sessions.c.started_at_cell,
    _sessions.c.ended_at_cell,
    _sessions.c.coverage_pct_cell,
)
_SEALED_THROUGH: Final = (
    # How far each device's seals reach, looked up once per device (PostgreSQL
    # memoizes the lateral probe by ``device_id``; a nested loop keeps the sessions'
    # index order).  Read at export time: the projector does not see seals, and a
    # seal may be stored long after the session ended.
    "LEFT JOIN LATERAL (SELECT max(z.seq) AS seq FROM seals z "
    "WHERE z.stream_id = s.device_id) AS sealed ON true"
)


def copy_export_statement(connection: Connection, query: Select[Any]) -> tuple[str, Any]:
    """``COPY … TO STDOUT (FORMAT csv)`` of ``query``'s sessions (its filters and
    scope, newest first) in the export's columns, and its parameters, for psycopg."""
    sealed, sealed_join = "NULL", ""
    if seals_kept(connection):
        sealed = (
            "CASE WHEN s.ended_seq IS NULL THEN NULL WHEN coalesce(sealed.seq, 0) >= "
            "s.ended_seq THEN 'signed' ELSE 'unsigned' END"
        )
        sealed_join = _SEALED_THROUGH
    cells = (
        "NULLIF(s.session_id, '')",
        "NULLIF(s.device_id, '')",
        "NULLIF(s.clinic_id, '')",
        "NULLIF(s.treatment_area, '')",
        "s.area_cm2_cell",
        "s.started_at_cell",
        "s.ended_at_cell",
        "s.cores_counted",
        "s.cores_reported",
        "CASE WHEN s.reconciled THEN 'true' WHEN NOT s.reconciled THEN 'false' END",
        "s.coverage_pct_cell",
        "NULLIF(s.chain_status, '')",
        "NULLIF(s.cartridge_ids, '')",
        "NULLIF(s.core_diameters_mm, '')",
        "s.started_seq",
        "s.ended_seq",
        "NULLIF(s.ended_hash, '')",
        sealed,
    )
    # The scoped, filtered query keeps its WHERE; PostgreSQL flattens it into the outer
    # query, so the newest-first order still walks ``read_sessions_started``.
    rows = query.with_only_columns(*SESSION_COLUMNS, *EXPORT_EVIDENCE, *EXPORT_CELLS)
    rows = rows.select_from(_sessions)
    inner = rows.compile(dialect=connection.dialect)
    statement = (
        f"COPY (SELECT {', '.join(cells)} FROM ({inner}) AS s {sealed_join} "  # noqa: S608
        "ORDER BY s.started_at DESC, s.session_id DESC) TO STDOUT (FORMAT csv)"
    )
    return statement, inner.params
