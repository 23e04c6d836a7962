"""A replay's bulk rows on PostgreSQL go by ``COPY`` (``services.eventstore.copy_in``):
the rows are the ones an ``INSERT`` writes, value for value, and a replay whose session
ids come again (a session restarted under its id, an id two devices name) leaves the
read models the live projector wrote, on SQLite and PostgreSQL alike."""

import importlib
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
from sqlalchemy import select

from services.eventstore import EventStore
from services.eventstore.copy_in import KeyTakenError, copy_in
from services.projections.read_store import ReadModelStore, ReadModelUpdate
from services.projector import Projector, replay
from tests.support.api_world import HandpieceWriter, simulated_events

_AGAIN = "0b9d7a52-4c1e-4f0a-8f3e-6a2d1c9b7e01"
_SHARED = "0b9d7a52-4c1e-4f0a-8f3e-6a2d1c9b7e02"
_TRICKY = "tab\there, new\nline, back\\slash \\N, quote ' \" and ünïcode ✓"


def _session_row(session_id: str, **overrides: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "session_id": session_id,
        "device_id": "HP-000901",
        "clinic_id": None,
        "treatment_area": _TRICKY,
        "area_cm2": 0.1 + 0.2,
        "started_at": datetime(2026, 11, 30, 8, 0, 0, 123456, tzinfo=UTC),
        "ended_at": datetime(2026, 11, 30, 9, 0, tzinfo=timezone(timedelta(hours=-5))),
        "cores_counted": 2**40,
        "cores_reported": None,
        "reconciled": False,
        "coverage_pct": 1e-300,
        "chain_status": "verified",
        "audit": {"started_seq": 3, "ended_seq": 9, "note": _TRICKY, "ratio": 2 / 3, "n": None},
        "cartridge_id": "CT-00001",
        "lot": None,
        "ended_hash": "ab" * 32,
        "cartridge_ids": "CT-00001;CT-00002",
        "core_diameters_mm": "0.5;0.25",
    }
    row.update(overrides)
    return row


def _device_row(device_id: str) -> dict[str, Any]:
    return {
        "device_id": device_id,
        "clinic_id": "clinic-alpha",
        "status": "in_session",
        "firmware_version": None,
        "last_seen": datetime(2026, 11, 30, 8, 0, tzinfo=UTC),
        "summary": orjson.Fragment(orjson.dumps({"applied_through": 7, "note": _TRICKY})),
        "snapshot": bytes(range(256)) + b"\\x00\\N\t\n",
        "open_session_id": "s-1",
        "waiting_for_seq": None,
        "updated_at": datetime(2026, 11, 30, 8, 0, 1, tzinfo=UTC),
    }


def _rows(store: ReadModelStore, table_name: str, key: str) -> dict[str, dict[str, Any]]:
    table = getattr(store.tables, table_name)
    with store.engine.connect() as connection:
        rows = connection.execute(select(table)).mappings().all()
    return {row[key]: dict(row) for row in rows}


def _copy(store: ReadModelStore, table_name: str, rows: Sequence[Mapping[str, Any]]) -> None:
    table = getattr(store.tables, table_name)
    columns = [column.name for column in table.columns if column.computed is None]
    with store.engine.begin() as connection:
        copy_in(connection, table.name, columns, rows, documents={"audit", "summary"})


def test_copied_rows_are_the_rows_an_insert_writes(postgres_url: str) -> None:
    """Text with tabs, newlines and backslashes, floats to the last bit, times in any
    zone, NULLs, JSON documents (plain and serialised already) and binary snapshots
    come back from a ``COPY`` exactly as from the store's own ``INSERT``; the generated
    columns are derived alike."""
    inserted = ReadModelStore(postgres_url, suffix="_inserted")
    copied = ReadModelStore(postgres_url, suffix="_copied")
    sessions = [_session_row("s-1"), _session_row("s-2", audit=None, reconciled=None)]
    sessions[1]["audit"] = {"started_seq": 4, "ended_seq": None, "list": [1, 2.5, "x"]}
    devices = [_device_row("HP-000901"), _device_row("HP-000902")]
    with inserted.engine.begin() as connection:
        inserted.write(connection, ReadModelUpdate(devices=devices, sessions=sessions))
    _copy(copied, "sessions", sessions)
    _copy(copied, "devices", devices)

    for name, key in (("sessions", "session_id"), ("devices", "device_id")):
        expected = _rows(inserted, name, key)
        assert len(expected) == 2
        assert _rows(copied, name, key) == expected
    assert _rows(copied, "sessions", "session_id")["s-1"]["ended_seq"] == 9
    assert _rows(copied, "sessions", "session_id")["s-1"]["treatment_area"] == _TRICKY
    inserted.close()
    copied.close()


def test_a_copy_of_a_taken_key_writes_nothing(postgres_url: str) -> None:
    """A key already in the table, or twice among the rows, fails the whole ``COPY``
    with ``KeyTakenError``; rolled back to a savepoint, the transaction goes on."""
    store = ReadModelStore(postgres_url, suffix="_taken")
    _copy(store, "sessions", [_session_row("s-1")])
    table = store.tables.sessions
    columns = [column.name for column in table.columns if column.computed is None]
    for attempt, rows in enumerate(
        ([_session_row("s-2"), _session_row("s-1")], [_session_row("s-3")] * 2)
    ):
        with store.engine.begin() as connection:
            with pytest.raises(KeyTakenError, match="s-"), connection.begin_nested():
                copy_in(connection, table.name, columns, rows, documents={"audit"})
            copy_in(connection, table.name, columns, [_session_row(f"ok-{attempt}")], {"audit"})
    assert set(_rows(store, "sessions", "session_id")) == {"s-1", "ok-0", "ok-1"}
    store.close()


def _live_and_replayed(
    store: EventStore, store_url: str, batch_size: int
) -> tuple[tuple[dict[str, Any], dict[str, Any]], tuple[dict[str, Any], dict[str, Any]]]:
    read_models = ReadModelStore(store_url)
    projector = Projector(store, read_models, batch_size=7)
    while projector.step():
        pass
    live = (_rows(read_models, "sessions", "session_id"), _devices(read_models))
    replay(store_url, store, batch_size=batch_size)
    replayed = (_rows(read_models, "sessions", "session_id"), _devices(read_models))
    read_models.close()
    return live, replayed


def _devices(read_models: ReadModelStore) -> dict[str, Any]:
    """Every column of every device row but its write time."""
    rows = _rows(read_models, "devices", "device_id")
    for row in rows.values():
        del row["updated_at"], row["snapshot"]
    return rows


def test_a_replay_of_session_ids_met_again_leaves_the_live_rows(
    store: EventStore, store_url: str
) -> None:
    """A session started again under the id of one that ended (in a later batch) and
    an open session whose id a later device's session has: the replay's rows are the
    live projector's, the last row of an id winning in both (one batch of the live
    projector's holding both devices' sessions of one id would write either)."""
    first = HandpieceWriter(store, "HP-000901")
    first.install_cartridge("CT-00001", "L2611A")
    first.start_session(_AGAIN, "op-1")
    first.punch(4)
    first.end_session(4, 12)
    for _ in range(6):
        first.fault("E-OVERHEAT", "warm", "info")
    first.start_session(_AGAIN, "op-2")
    first.punch(2)
    first.end_session(2, 6)
    first.start_session(_SHARED, "op-1")
    first.punch(3)
    second = HandpieceWriter(store, "HP-000902")
    second.install_cartridge("CT-00002", "L2611B")
    for _ in range(7):  # the other device's open session is out of the live batch
        second.fault("E-OVERHEAT", "warm", "info")
    second.start_session(_SHARED, "op-3")
    second.punch(5)

    live, replayed = _live_and_replayed(store, store_url, batch_size=3)
    assert set(live[0]) == {_AGAIN, _SHARED}
    assert live[0][_AGAIN]["cores_counted"] == 6  # the second session's
    assert live[0][_SHARED]["device_id"] == "HP-000902"  # the later one's
    assert replayed == live


def test_a_replay_of_a_simulated_fleet_copies_its_rows_on_postgresql(
    store: EventStore, store_url: str, adapter: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Simulated handpieces' sessions, ended in many batches: the replay writes the
    live projector's rows, on PostgreSQL by ``COPY`` (every session and device row)."""
    copied: list[str] = []

    def counted(connection: Any, table: str, columns: Any, rows: Any, documents: Any) -> None:
        rows = list(rows)
        copied.extend(table for _ in rows)
        copy_in(connection, table, columns, rows, documents)

    # The module, not the function the package exports under the same name.
    monkeypatch.setattr(importlib.import_module("services.projector.replay"), "copy_in", counted)
    devices = ("HP-000101", "HP-000102", "HP-000201")
    for device_id in devices:
        store.append(simulated_events(device_id, seed=3, hours=6))

    live, replayed = _live_and_replayed(store, store_url, batch_size=50)
    assert len(live[0]) > 10
    assert replayed == live
    if adapter == "postgres":
        assert copied.count("read_sessions_next") == len(live[0])
        assert copied.count("read_devices_next") == len(devices)
    else:
        assert copied == []
