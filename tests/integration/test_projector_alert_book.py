"""The live projector keeps its alert book and the clinic policies between its own
batches (SQLite and PostgreSQL): loaded once while the checkpoint is its own, the book
kept in step with what the clock decides, and the policies validated again whenever
one is set."""

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Connection

from services.alerts import store as alert_store
from services.alerts.engine import Key
from services.alerts.policy import AlertPolicy
from services.eventstore import EventStore
from services.projections.read_store import ReadModelStore
from services.projector import Projector
from tests.support.read_alerts import alert_rows
from tests.support.streams import device_stream


def _catch_up(projector: Projector) -> None:
    while projector.step():
        pass


def test_the_book_and_policies_are_loaded_once_while_the_checkpoint_is_the_projectors(
    store: EventStore, store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Batch after batch, each device's book is read once and the policies validated
    once; a policy set meanwhile is validated again for the next batch."""
    devices = ["HP-000431", "HP-000432", "HP-000433"]
    for device in devices:
        store.append(device_stream(device, 12))
    books: list[str] = []
    policies: list[int] = []
    load_book, load_policies = alert_store.load_book, alert_store.load_policies

    def book_counted(
        connection: Connection, device_ids: Iterable[str]
    ) -> dict[str, dict[Key, str]]:
        wanted = list(device_ids)
        books.extend(wanted)
        return load_book(connection, wanted)

    def policies_counted(connection: Connection) -> dict[str, AlertPolicy]:
        found = load_policies(connection)
        policies.append(len(found))
        return found

    monkeypatch.setattr(alert_store, "load_book", book_counted)
    monkeypatch.setattr(alert_store, "load_policies", policies_counted)
    read_models = ReadModelStore(store_url)
    projector = Projector(store, read_models, batch_size=5)
    batches = 0
    while projector.step():
        batches += 1
    assert batches >= 7
    assert sorted(books) == devices  # each once
    assert policies == [0]
    alert_store.set_policy(read_models.engine, "clinic-x", {"coverage_max_pct": 5.0})
    store.append(device_stream(devices[0], 2, first_seq=13, prev_hash=_head(store, devices[0])))
    _catch_up(projector)
    assert policies == [0, 1]  # the table moved: validated again, with the new one
    assert sorted(books) == devices
    read_models.close()


def test_the_clocks_alerts_are_in_the_book_the_next_batch_judges_with(
    store: EventStore, store_url: str
) -> None:
    """The clock raises ``device_offline`` over a device silent in its session; when
    the device speaks again, the next batch resolves it from the kept book."""
    device = "HP-000434"
    store.append(device_stream(device, 5))  # seq 3 opened a session
    read_models = ReadModelStore(store_url)
    now = [datetime.now(UTC) + timedelta(minutes=10)]
    projector = Projector(store, read_models, clock=lambda: now[0])
    _catch_up(projector)
    projector.tick()
    _catch_up(projector)
    assert (device, "device_offline", "presence", "open") in alert_rows(read_models)
    store.append(device_stream(device, 3, first_seq=6, prev_hash=_head(store, device)))
    _catch_up(projector)
    _catch_up(projector)  # the resolution's own event
    assert (device, "device_offline", "presence", "resolved") in alert_rows(read_models)
    with read_models.engine.connect() as connection:
        assert alert_store.load_book(connection, [device]) == {device: {}}
    read_models.close()


def _head(store: EventStore, device: str) -> str:
    return store.read_stream(device)[-1].hash
