"""The export's cells that are pure functions of a session's columns (its times, area
and coverage as the CSV prints them) are columns the database generates: they are
what the Python writer prints for the same session, follow the session when the
projector rewrites it, and a read model that lacks them is rebuilt at start-up.
SQLite and PostgreSQL."""

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import Connection, text

from services.api.access import Principal, Role
from services.api.csv_export import export_cells
from services.api.queries import sessions as session_queries
from services.api.queries.tables import READ
from services.projections.read_store import ReadModelStore
from tests.support.api_world import CLINIC_A, build_world
from tests.support.session_columns import read_connection, rebuilt_without, session_columns

FLEET_AUDITOR = Principal("auditor", Role.AUDITOR, None, "auditor")
_CELLS = ("area_cm2_cell", "started_at_cell", "ended_at_cell", "coverage_pct_cell")
_PRINTED_AT = (4, 5, 6, 10)
"""Where ``export_cells`` prints the area, the two times and the coverage."""
_CORNERS: list[dict[str, Any]] = [
    {"area_cm2": 12.0, "coverage_pct": 0.0, "ended_at": None,
     "started_at": datetime(2026, 11, 21, 9, 0, tzinfo=UTC)},
    {"area_cm2": 0.1 + 0.2, "coverage_pct": 99.99999,
     "started_at": datetime(2026, 11, 21, 9, 0, 0, 1, tzinfo=UTC),
     "ended_at": datetime(2026, 11, 21, 9, 30, 0, 999999, tzinfo=UTC)},
    {"area_cm2": 1 / 3, "coverage_pct": 100 / 3,
     "started_at": datetime(2026, 12, 31, 23, 59, 59, 120000, tzinfo=UTC),
     "ended_at": datetime(2027, 1, 1, 0, 0, 0, 500, tzinfo=UTC)},
    {"area_cm2": 1e-05, "coverage_pct": 12.345678, "ended_at": None,
     "started_at": datetime(999, 1, 2, 3, 4, 5, tzinfo=UTC)},
]  # fmt: skip


def _insert_corners(connection: Connection) -> None:
    for number, corner in enumerate(_CORNERS):
        connection.execute(
            READ.sessions.insert().values(
                session_id=f"00000000-0000-4000-8000-0000000000c{number}",
                device_id="HP-000101", clinic_id=CLINIC_A, treatment_area="neck",
                cores_counted=40, chain_status="verified",
                audit={"started_seq": 1, "ended_seq": None}, **corner,
            )
        )  # fmt: skip


@pytest.fixture
def world_url(store_url: str) -> str:
    build_world(store_url, hours=6.0)
    read_models = ReadModelStore(store_url)
    with read_models.engine.begin() as connection:
        _insert_corners(connection)
    read_models.close()
    return store_url


@pytest.fixture
def connection(world_url: str) -> Iterator[Connection]:
    with read_connection(world_url) as opened:
        yield opened


def _cells(connection: Connection) -> dict[str, tuple[Any, ...]]:
    return session_columns(connection, _CELLS)


def _printed(connection: Connection) -> dict[str, tuple[Any, ...]]:
    """The same cells as the Python writer prints them from the session's own columns."""
    query = session_queries.session_query(FLEET_AUDITOR)
    printed: dict[str, tuple[Any, ...]] = {}
    for rows in session_queries.stream_export(connection, query, 100):
        for row in rows:
            cells = export_cells(row)
            printed[row[0]] = tuple(
                None if cells[i] is None else str(cells[i]) for i in _PRINTED_AT
            )
    return printed


def test_the_generated_cells_are_what_the_export_prints(connection: Connection) -> None:
    printed = _printed(connection)
    assert len(printed) > len(_CORNERS)  # the world's sessions and the corners
    assert _cells(connection) == printed
    corner = _cells(connection)["00000000-0000-4000-8000-0000000000c1"]
    assert corner == (
        "0.30000000000000004", "2026-11-21T09:00:00.000001Z", "2026-11-21T09:30:00.999999Z",
        "100.00",
    )  # fmt: skip


def test_the_cells_follow_a_rewritten_session(connection: Connection) -> None:
    """The projector rewrites a session's row when it ends: the cells are the new row's."""
    session_id = "00000000-0000-4000-8000-0000000000c0"
    with connection.begin():
        connection.execute(
            READ.sessions.update()
            .where(READ.sessions.c.session_id == session_id)
            .values(
                area_cm2=7.25, coverage_pct=54.321,
                ended_at=datetime(2026, 11, 21, 9, 45, 30, 250000, tzinfo=UTC),
            )
        )  # fmt: skip
    assert _cells(connection)[session_id] == (
        "7.25", "2026-11-21T09:00:00Z", "2026-11-21T09:45:30.250000Z", "54.32",
    )  # fmt: skip
    assert _cells(connection) == _printed(connection)


def test_read_sessions_without_the_cells_are_rebuilt(world_url: str) -> None:
    with read_connection(world_url) as connection:
        # The corner rows are no fold's: a rebuild by replay would not bring them back.
        connection.execute(text("DELETE FROM read_sessions WHERE session_id LIKE '%0000000c_'"))
        connection.commit()
    folded, rebuilt = rebuilt_without(world_url, _CELLS)
    assert rebuilt == folded
    with read_connection(world_url) as connection:
        assert _cells(connection) == _printed(connection)
