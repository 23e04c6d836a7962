"""Session audits as a principal may see them, newest first."""

from collections.abc import Iterator
from datetime import datetime
from typing import Any, Final

from sqlalchemy import Connection, Select, select, tuple_

from services.api.access import Principal
from services.api.models import SessionOut
from services.api.queries.evidence import Evidence, SessionSpan, collect, with_evidence
from services.api.queries.scope import scoped
from services.api.queries.tables import READ, aware, utc

_sessions = READ.sessions
SESSION_COLUMNS: Final = tuple(_sessions.c[name] for name in SessionOut.model_fields)
"""The columns of ``SessionOut``, in its order (the CSV export's first columns too)."""


def session_query(
    principal: Principal,
    *,
    device_id: str | None = None,
    clinic_id: str | None = None,
    started_from: datetime | None = None,
    started_to: datetime | None = None,
) -> Select[Any]:
    query = select(*SESSION_COLUMNS).where(scoped(principal, _sessions.c.clinic_id))
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
