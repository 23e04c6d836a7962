"""Session audits as a principal may see them, newest first."""

from collections.abc import Iterator
from datetime import datetime
from typing import Any, Final

from sqlalchemy import Connection, Select, select, tuple_

from services.api.access import Principal
from services.api.models import SessionOut
from services.api.queries.scope import scoped
from services.api.queries.tables import READ, aware, utc

_sessions = READ.sessions
SESSION_COLUMNS: Final = tuple(_sessions.c[name] for name in SessionOut.model_fields)
"""The columns of ``SessionOut``, in its order (the CSV export's columns too)."""


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
    ordered = query.order_by(_sessions.c.started_at.desc(), _sessions.c.session_id.desc())
    return [session_out(row) for row in connection.execute(ordered.limit(limit + 1))]


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


def stream_rows(connection: Connection, query: Select[Any], chunk: int) -> Iterator[Any]:
    """Every row of ``query`` in start order, fetched ``chunk`` at a time by a
    server-side cursor: memory stays flat however many sessions match."""
    ordered = query.order_by(_sessions.c.started_at, _sessions.c.session_id)
    result = connection.execution_options(stream_results=True, yield_per=chunk).execute(ordered)
    yield from result


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
