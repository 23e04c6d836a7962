"""The session CSV as PostgreSQL formats it (``COPY … TO STDOUT``) is byte for byte
the CSV the row-by-row writer makes, for every scope and filter: the same rows, cells,
quoting and line ends, evidence columns included."""

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import Connection, text

from services.api.access import Principal, Role
from services.api.csv_export import csv_lines, export_csv
from services.api.queries import sessions as session_queries
from services.api.queries.tables import READ
from services.projections.read_store import ReadModelStore
from tests.support.api_world import CLINIC_A, CLINIC_B, build_world
from tests.support.postgres import TemporaryPostgres

_CHUNK = 7  # several chunks, so the row-by-row writer's chunking is exercised too
FLEET_AUDITOR = Principal("auditor", Role.AUDITOR, None, "auditor")
CLINIC_AUDITOR = Principal("auditor-a", Role.AUDITOR, CLINIC_A, "auditor-a")
CLINIC_B_USER = Principal("clinic-b", Role.CLINIC, CLINIC_B, "clinic-b")


@pytest.fixture(scope="module")
def database(postgres_server: TemporaryPostgres) -> str:
    """A world with sessions, cartridge swaps and one seal, plus hand-made rows that
    reach the formats' corners: an integral area, a start with no microseconds, an
    open session (no end, no last seq, no reconciliation) and no cartridge at all."""
    url = postgres_server.create_database("test_csv_export_copy", template="coreline_template")
    build_world(url, hours=6.0)
    read_models = ReadModelStore(url)
    with read_models.engine.begin() as connection:
        device_id, last_seq = connection.execute(
            text(
                "SELECT device_id, (audit ->> 'ended_seq')::bigint FROM read_sessions "
                "WHERE audit ->> 'ended_seq' IS NOT NULL ORDER BY started_at LIMIT 1"
            )
        ).one()
        connection.execute(
            text(
                "INSERT INTO seals (stream_id, seq, key_id, sig, stored_at) "
                "VALUES (:stream, :seq, 'c237fe2fd2925b9b', 'sig', CURRENT_TIMESTAMP)"
            ),
            {"stream": device_id, "seq": last_seq},
        )
        corners = [
            {"session_id": "00000000-0000-4000-8000-00000000000a", "area_cm2": 12.0,
             "started_at": datetime(2026, 11, 21, 9, 0, tzinfo=UTC), "ended_at": None,
             "cores_reported": None, "reconciled": None, "coverage_pct": 0.0,
             "audit": {"started_seq": 3, "ended_seq": None, "cartridge_ids": []}},
            {"session_id": "00000000-0000-4000-8000-00000000000b", "area_cm2": 0.1,
             "started_at": datetime(2026, 11, 21, 9, 0, 0, 1, tzinfo=UTC),
             "ended_at": datetime(2026, 11, 21, 9, 30, 0, 999999, tzinfo=UTC),
             "cores_reported": 40, "reconciled": False, "coverage_pct": 99.99999,
             "audit": {"started_seq": 1, "ended_seq": 9, "cartridge_ids": ["CX-A", "CX-B"]}},
        ]  # fmt: skip
        for corner in corners:
            connection.execute(
                READ.sessions.insert().values(
                    device_id="HP-000101", clinic_id=CLINIC_A, treatment_area="neck",
                    cores_counted=40, chain_status="verified", **corner,
                )
            )  # fmt: skip
    read_models.close()
    return url


@pytest.fixture
def connection(database: str) -> Iterator[Connection]:
    read_models = ReadModelStore(database)
    with read_models.engine.connect() as opened:
        yield opened
    read_models.close()


def _row_by_row(connection: Connection, query: object) -> bytes:
    lines = csv_lines(session_queries.stream_export(connection, query, _CHUNK))  # type: ignore[arg-type]
    return "".join(lines).encode()


def _by_copy(connection: Connection, query: object) -> bytes:
    pieces = export_csv(connection, query, _CHUNK)  # type: ignore[arg-type]
    return b"".join(piece if isinstance(piece, bytes) else piece.encode() for piece in pieces)


@pytest.mark.parametrize(
    ("who", "filters"),
    [
        (FLEET_AUDITOR, {}),
        (CLINIC_AUDITOR, {}),
        (CLINIC_B_USER, {}),
        (FLEET_AUDITOR, {"device_id": "HP-000101"}),
        (
            FLEET_AUDITOR,
            {"clinic_id": CLINIC_A, "started_from": datetime(2026, 11, 20, 10, tzinfo=UTC)},
        ),
        (CLINIC_AUDITOR, {"clinic_id": CLINIC_B}),
    ],
    ids=["fleet", "clinic-auditor", "clinic-b", "device", "clinic-and-time", "other-clinic"],
)
def test_copy_export_is_the_row_by_row_export_byte_for_byte(
    connection: Connection, who: Principal, filters: dict[str, object]
) -> None:
    """Same bytes from PostgreSQL's formatting as from the Python writer, scope and
    filters applied the same way."""
    query = session_queries.session_query(who, **filters)  # type: ignore[arg-type]
    expected = _row_by_row(connection, query)
    assert _by_copy(connection, query) == expected
    assert expected.count(b"\r\n") >= 1  # the header at least


def test_the_corner_rows_and_the_evidence_are_really_exported(connection: Connection) -> None:
    """The comparison above covers what it claims: the hand-made rows, swaps (two
    cartridges and two diameters), a signed session and stored hashes are all there."""
    exported = _by_copy(connection, session_queries.session_query(FLEET_AUDITOR))
    assert b"00000000-0000-4000-8000-00000000000a,HP-000101,clinic-alpha,neck,12.0," in exported
    assert b",2026-11-21T09:00:00Z,,40,,,0.00,verified,,,3,,," in exported
    assert b",2026-11-21T09:00:00.000001Z,2026-11-21T09:30:00.999999Z,40,40,false,100.00," in (
        exported
    )
    rows = exported.decode().split("\r\n")[1:-1]
    assert any(";" in row.split(",")[12] and ";" in row.split(",")[13] for row in rows)
    assert sum(row.endswith(",signed") for row in rows) == 1
    assert sum(len(row.split(",")[16]) == 64 for row in rows) >= 10
