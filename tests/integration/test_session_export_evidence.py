"""The evidence the CSV export prints beside each session (its seqs, the stored hash of
its end, its cartridges and their core diameters) is kept with the session by the
projector, and is what the event store itself shows; the seal status is read at export
time, so a seal stored after the session ended is printed at once.  SQLite and
PostgreSQL."""

import csv
import io
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Connection, select, text

from services.api.access import Principal, Role
from services.api.csv_export import CSV_COLUMNS, export_csv
from services.api.queries import sessions as session_queries
from services.api.queries.tables import READ
from services.eventstore import open_event_store
from services.projections.read_schema import read_schema_gap
from services.projections.read_store import ReadModelStore
from services.projector.read_upgrade import bring_up_to_date
from tests.support.api_world import build_world

FLEET_AUDITOR = Principal("auditor", Role.AUDITOR, None, "auditor")
_EVIDENCE = ("started_seq", "ended_seq", "ended_hash", "cartridge_ids", "core_diameters_mm")


@pytest.fixture
def world_url(store_url: str) -> str:
    build_world(store_url, hours=6.0)
    return store_url


@pytest.fixture
def connection(world_url: str) -> Iterator[Connection]:
    read_models = ReadModelStore(world_url)
    with read_models.engine.connect() as opened:
        yield opened
    read_models.close()


def _stored(connection: Connection) -> dict[str, tuple[Any, ...]]:
    sessions = READ.sessions
    columns = [sessions.c[name] for name in _EVIDENCE]
    rows = connection.execute(select(sessions.c.session_id, *columns))
    return {row[0]: tuple(row[1:]) for row in rows}


def _exported(connection: Connection, **filters: Any) -> list[dict[str, str]]:
    query = session_queries.session_query(FLEET_AUDITOR, **filters)
    pieces = export_csv(connection, query, 50)
    body = b"".join(piece if isinstance(piece, bytes) else piece.encode() for piece in pieces)
    rows = list(csv.DictReader(io.StringIO(body.decode(), newline="")))
    assert rows
    assert list(rows[0]) == list(CSV_COLUMNS)
    return rows


def test_the_stored_evidence_of_each_session_is_what_the_event_store_shows(
    connection: Connection,
) -> None:
    stored = _stored(connection)
    assert len(stored) >= 20
    for session_id, (first, last, last_hash, cartridges, diameters) in stored.items():
        found = session_queries.session_evidence(connection, FLEET_AUDITOR, session_id)
        assert found is not None
        span, evidence = found
        assert (first, last) == (span.first_seq, span.last_seq)
        assert last_hash == evidence.last_hash(span)
        assert cartridges == (";".join(span.cartridge_ids) or None)
        from_store = [evidence.core_diameter(span, cartridge) for cartridge in span.cartridge_ids]
        cells = ["" if diameter is None else repr(diameter) for diameter in from_store]
        assert diameters == (";".join(cells) or None)
    ended = [row for row in stored.values() if row[1] is not None]
    assert ended
    assert all(row[2] is not None and len(row[2]) == 64 for row in ended)
    assert any(";" in row[3] and ";" in row[4] for row in stored.values() if row[3])  # swaps
    assert all(row[4] and "" not in row[4].split(";") for row in ended)  # every diameter known


def test_a_seal_stored_after_a_session_ended_is_exported_at_once(
    connection: Connection,
) -> None:
    device_id = "HP-000101"
    before = _exported(connection, device_id=device_id)
    ended = sorted(int(row["last_seq"]) for row in before if row["last_seq"])
    assert len(ended) >= 3
    assert {row["seal_status"] for row in before if row["last_seq"]} == {"unsigned"}
    reach = ended[len(ended) // 2]
    connection.execute(
        text(
            "INSERT INTO seals (stream_id, seq, key_id, sig, stored_at) "
            "VALUES (:stream, :seq, 'c237fe2fd2925b9b', 'sig', CURRENT_TIMESTAMP)"
        ),
        {"stream": device_id, "seq": reach},
    )
    connection.commit()
    after = _exported(connection, device_id=device_id)
    for row in after:
        if not row["last_seq"]:
            assert row["seal_status"] == ""  # open: nothing to vouch for yet
        else:
            signed = int(row["last_seq"]) <= reach
            assert row["seal_status"] == ("signed" if signed else "unsigned")
    assert sum(row["seal_status"] == "signed" for row in after) == len(ended) // 2 + 1


def test_read_sessions_of_an_earlier_release_are_rebuilt_with_the_evidence(
    world_url: str,
) -> None:
    read_models = ReadModelStore(world_url)
    with read_models.engine.connect() as connection:
        folded = _stored(connection)
    with read_models.engine.begin() as connection:
        for name in _EVIDENCE:
            connection.execute(text(f"ALTER TABLE read_sessions DROP COLUMN {name}"))
    read_models.close()

    earlier = ReadModelStore(world_url)
    assert read_schema_gap(earlier.engine, earlier.tables).columns == {
        "read_sessions": list(_EVIDENCE)
    }
    said: list[str] = []
    events = open_event_store(world_url)
    try:
        assert bring_up_to_date(earlier, world_url, events, said.append) is not None
        assert "read_sessions lacks started_seq" in said[0]
        with earlier.engine.connect() as connection:
            assert _stored(connection) == folded
        # Current now, generated columns included: the next start replays nothing.
        assert bring_up_to_date(earlier, world_url, events, said.append) is None
    finally:
        events.close()
        earlier.close()
