"""The ``summary`` and ``audit`` documents of the read models: serialised once by the
fold and written unchanged, they read back on SQLite and PostgreSQL alike as the plain
JSON values of the fold's summary and session audits."""

from typing import Any

import orjson
from sqlalchemy import select

from services.eventstore import Cursor, InMemoryEventStore
from services.projections.read_store import ReadModelStore, document
from services.projector import Folder
from tests.support.streams import device_stream

DEVICE = "HP-000321"


def _folded(events: int) -> tuple[Folder, Any]:
    store = InMemoryEventStore()
    store.append(device_stream(DEVICE, events))
    folder = Folder(lambda _ids: {}, lambda _ids: {})
    return folder, folder.fold(store.read(Cursor.START, 1000))


def test_a_device_row_carries_its_summary_serialised_once() -> None:
    folder, update = _folded(40)
    (row,) = update.devices
    assert isinstance(row["summary"], orjson.Fragment)
    written = orjson.loads(orjson.dumps(row["summary"]))
    assert written == document(folder.projections[DEVICE].summary())
    assert written["applied_through"] == 40


def test_summaries_and_audits_read_back_as_the_documents_of_their_folds(store_url: str) -> None:
    folder, update = _folded(60)
    projection = folder.projections[DEVICE]
    assert update.sessions, "the stream opens a session"
    read_models = ReadModelStore(store_url)
    try:
        with read_models.engine.begin() as connection:
            read_models.write(connection, update)
        devices, sessions = read_models.tables.devices, read_models.tables.sessions
        with read_models.engine.connect() as connection:
            summary = connection.execute(select(devices.c.summary)).scalar_one()
            audits = dict(connection.execute(select(sessions.c.session_id, sessions.c.audit)).all())
    finally:
        read_models.close()
    assert summary == document(projection.summary())
    assert summary["device_id"] == DEVICE
    expected = {audit.session_id: document(audit) for audit in projection.session_audits()}
    assert audits == expected
