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
from sqlalchemy import Connection, text

from services.api.access import Principal, Role
from services.api.csv_export import CSV_COLUMNS, export_csv
from services.api.queries import sessions as session_queries
from tests.support.api_world import build_world
from tests.support.session_columns import read_connection, rebuilt_without, session_columns

FLEET_AUDITOR = Principal("auditor", Role.AUDITOR, None, "auditor")
_EVIDENCE = ("started_seq", "ended_seq", "ended_hash", "cartridge_ids", "core_diameters_mm")


@pytest.fixture
def world_url(store_url: str) -> str:
    build_world(store_url, hours=6.0)
    return store_url


@pytest.fixture
def connection(world_url: str) -> Iterator[Connection]:
    with read_connection(world_url) as opened:
        yield opened


def _stored(connection: Connection) -> dict[str, tuple[Any, ...]]:
    return session_columns(connection, _EVIDENCE)


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
    folded, rebuilt = rebuilt_without(world_url, _EVIDENCE)
    assert rebuilt == folded
