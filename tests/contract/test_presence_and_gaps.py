"""Device presence and seq-gap finding (DESIGN §4, §5), run against every adapter,
and the schema upgrade that brought the presence table."""

import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config

from services.eventstore import (
    DatabaseUrl,
    EventStore,
    Gap,
    Presence,
    SchemaMissingError,
    open_event_store,
    upgrade_schema,
)
from services.eventstore.migrations import MIGRATIONS_DIR, SCHEMA_REVISION
from services.eventstore.sqlite_schema import SCHEMA_VERSION, upgrade_sqlite
from tests.support.postgres import TemporaryPostgres
from tests.support.streams import device_stream

NOON = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
DEVICE = "HP-000001"


def _store_seqs(store: EventStore, seqs: Sequence[int], device_id: str = DEVICE) -> None:
    """Append just ``seqs`` of a correctly chained stream, as if the rest were lost
    (those past a hole are held, not stored)."""
    if not seqs:
        return
    stream = device_stream(device_id, max(seqs))
    result = store.append([stream[seq - 1] for seq in seqs])
    assert (result.appended + result.held, result.rejected) == (len(seqs), ())


def test_presence_is_recorded_and_replaced_by_newer_status(store: EventStore) -> None:
    """A status is stored with its time, and a later one replaces it."""
    store.record_presence(DEVICE, online=True, at=NOON)
    assert store.presence() == {DEVICE: Presence(online=True, changed_at=NOON)}
    later = NOON + timedelta(minutes=5)
    store.record_presence(DEVICE, online=False, at=later)
    (stored,) = store.presence().values()
    assert stored == Presence(online=False, changed_at=later)
    assert stored.changed_at.tzinfo is not None


def test_a_stale_status_does_not_overwrite_a_newer_one(store: EventStore) -> None:
    """A status stamped before the stored one is ignored, whatever its UTC offset;
    one stamped at the same instant replaces it."""
    store.record_presence(DEVICE, online=True, at=NOON)
    # 13:30 at UTC+2 is 11:30 UTC: half an hour older than the stored status.
    earlier_elsewhere = datetime(2026, 11, 24, 13, 30, tzinfo=timezone(timedelta(hours=2)))
    store.record_presence(DEVICE, online=False, at=earlier_elsewhere)
    assert store.presence() == {DEVICE: Presence(online=True, changed_at=NOON)}
    store.record_presence(DEVICE, online=False, at=NOON)
    assert store.presence() == {DEVICE: Presence(online=False, changed_at=NOON)}


def test_presence_filters_by_device_ids(store: EventStore) -> None:
    """Only the asked-for devices come back; unknown ids and an empty list give nothing."""
    for number, online in enumerate([True, False, True], start=1):
        store.record_presence(f"HP-00000{number}", online=online, at=NOON)
    assert store.presence(["HP-000001", "HP-000003", "HP-404404"]) == {
        "HP-000001": Presence(online=True, changed_at=NOON),
        "HP-000003": Presence(online=True, changed_at=NOON),
    }
    assert store.presence([]) == {}
    assert set(store.presence()) == {"HP-000001", "HP-000002", "HP-000003"}


def test_presence_is_empty_before_any_status(store: EventStore) -> None:
    """A store that never saw a status knows no device's presence."""
    assert store.presence() == {}
    assert store.presence([DEVICE]) == {}


@pytest.mark.parametrize(
    ("stored", "after_seq", "gaps", "through"),
    [
        pytest.param([], 0, [], 0, id="no-events"),
        pytest.param([], 5, [], 5, id="no-events-after-cut-off"),
        pytest.param(range(1, 11), 0, [], 10, id="contiguous"),
        pytest.param(range(1, 11), 4, [], 10, id="contiguous-after-cut-off"),
        pytest.param([1, 2, 5, 6, 9, 12], 0, [(3, 4), (7, 8), (10, 11)], 2, id="middle"),
        pytest.param([4, 5, 6], 0, [(1, 3)], 0, id="missing-start"),
        pytest.param([5, 6, 9, 12], 2, [(3, 4), (7, 8), (10, 11)], 2, id="cut-off-before-gap"),
        pytest.param([1, 2, 5, 6, 9, 12], 6, [(7, 8), (10, 11)], 6, id="cut-off-at-stored"),
        pytest.param([1, 2, 5, 6, 9, 12], 7, [(8, 8), (10, 11)], 7, id="cut-off-inside-gap"),
        pytest.param([1, 2, 5, 6, 9, 12], 12, [], 12, id="cut-off-at-tail"),
        pytest.param([1, 2, 5, 6, 9, 12], 20, [], 20, id="cut-off-beyond-tail"),
    ],
)
def test_gaps_and_contiguous_prefix(
    store: EventStore,
    stored: Sequence[int],
    after_seq: int,
    gaps: list[tuple[int, int]],
    through: int,
) -> None:
    """Holes above the cut-off are found (never the unknown tail) and the whole run
    after the cut-off ends just before the first hole."""
    _store_seqs(store, list(stored))
    _store_seqs(store, range(1, 30), device_id="HP-000002")  # another stream, no holes
    assert store.find_gaps(DEVICE, after_seq) == [Gap(DEVICE, first, last) for first, last in gaps]
    assert store.contiguous_through(DEVICE, after_seq) == through


def test_filled_gaps_disappear(store: EventStore) -> None:
    """Once a resend fills the holes, no gap is left and the run reaches the tail."""
    _store_seqs(store, [1, 2, 5, 6, 9, 12])
    stream = device_stream(DEVICE, 12)
    store.append([stream[seq - 1] for seq in (3, 4, 7, 8)])
    assert store.find_gaps(DEVICE) == [Gap(DEVICE, 10, 11)]
    assert store.contiguous_through(DEVICE) == 9
    store.append(stream[9:11])
    assert store.find_gaps(DEVICE) == []
    assert store.contiguous_through(DEVICE, 9) == 12


def _sqlite_schema(path: Path) -> tuple[int, list[tuple[str, str, str]]]:
    with sqlite3.connect(path) as connection:
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        objects = connection.execute(
            "SELECT type, name, sql FROM sqlite_master ORDER BY name"
        ).fetchall()
    return version, objects


def _downgrade_sqlite_to_version_1(path: Path) -> None:
    """Version 2 only added ``presence``: without it, and stamped 1, a file is exactly
    what the version 1 code created."""
    with sqlite3.connect(path) as connection:
        connection.execute("DROP TABLE presence")
        connection.execute("PRAGMA user_version = 1")


def test_sqlite_file_at_version_1_is_refused_then_upgraded_in_place(tmp_path: Path) -> None:
    """An older SQLite file is refused with the command to run, and ``db upgrade``
    brings it to the current version keeping its events."""
    path = tmp_path / "coreline.db"
    url = f"sqlite:///{path}"
    upgrade_schema(url)
    store = open_event_store(url)
    _store_seqs(store, range(1, 6))
    store.close()
    _downgrade_sqlite_to_version_1(path)

    with pytest.raises(SchemaMissingError, match=r"version 1, .*run `coreline db upgrade`"):
        open_event_store(url)

    upgrade_schema(url)
    assert _sqlite_schema(path)[0] == SCHEMA_VERSION
    store = open_event_store(url)
    assert store.contiguous_through(DEVICE) == 5
    store.record_presence(DEVICE, online=True, at=NOON)
    assert store.presence() == {DEVICE: Presence(online=True, changed_at=NOON)}
    store.close()


def test_sqlite_upgrade_of_a_current_file_changes_nothing(tmp_path: Path) -> None:
    """Upgrading a file already at the current version leaves its schema as it was."""
    path = tmp_path / "coreline.db"
    upgrade_sqlite(path)
    before = _sqlite_schema(path)
    upgrade_sqlite(path)
    assert _sqlite_schema(path) == before
    assert before[0] == SCHEMA_VERSION


def test_postgres_database_at_0001_is_refused_then_upgraded(
    postgres_server: TemporaryPostgres,
) -> None:
    """A database migrated only to 0001 is refused naming both revisions, and
    ``db upgrade`` brings it to the head this code needs."""
    url = postgres_server.create_database("at_0001")
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["sqlalchemy_url"] = DatabaseUrl.parse(url).sqlalchemy_url
    command.upgrade(config, "0001")

    refusal = rf"revision 0001, .*needs {SCHEMA_REVISION}: run `coreline db upgrade`"
    with pytest.raises(SchemaMissingError, match=refusal):
        open_event_store(url)

    upgrade_schema(url)
    store = open_event_store(url)
    store.record_presence(DEVICE, online=False, at=NOON)
    assert store.presence() == {DEVICE: Presence(online=False, changed_at=NOON)}
    store.close()
