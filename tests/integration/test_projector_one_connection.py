"""The live projector's batch in one connection of the read models' pool: the
checkpoint read, the alert book, and the rows committed with the checkpoint, all or
nothing, whatever stops the batch half-way."""

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy.exc
from sqlalchemy import event, select

from services.alerts import store as alert_store
from services.eventstore import Cursor, EventStore, load_checkpoint, save_checkpoint
from services.projections.read_store import ReadModelStore
from services.projector import PROJECTOR, Projector
from tests.integration.test_projector import _append_vectors, _assert_expected
from tests.support.read_alerts import alert_rows
from tests.support.streams import device_stream


def test_a_batch_of_devices_kept_takes_one_connection_from_the_pool(
    store: EventStore, store_url: str
) -> None:
    """Each checkout is a ping and a wait: once the devices are kept, a batch reads
    its checkpoint, its alert book and commits through one."""
    store.append(device_stream("HP-000001", 20))
    read_models = ReadModelStore(store_url)
    checkouts: list[int] = []

    def counted(*_: Any) -> None:
        checkouts.append(1)

    event.listen(read_models.engine, "checkout", counted)
    projector = Projector(store, read_models, batch_size=5)
    assert projector.step() == 5  # the device's first batch loads its rows
    per_batch = []
    while True:
        checkouts.clear()
        if not projector.step():
            break
        per_batch.append(len(checkouts))
    assert per_batch == [1, 1, 1]
    read_models.close()


def _checkpoint(read_models: ReadModelStore) -> Cursor:
    with read_models.engine.connect() as connection:
        return load_checkpoint(connection, PROJECTOR)


def test_a_projector_stopped_after_its_alert_events_loses_and_duplicates_nothing(
    store: EventStore, store_url: str, vectors_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The alert events are appended, then the batch's commit fails (as a kill would
    stop it): no row and no checkpoint of the batch are stored, and the projector after
    it folds the batch again into the expected rows, its alert events stored once."""
    _append_vectors(store, vectors_dir, order_seed=7)
    events_stored = store.count_events()
    read_models = ReadModelStore(store_url)

    def killed(*_: Any) -> None:
        raise RuntimeError("killed before the commit")

    monkeypatch.setattr(alert_store, "save_decisions", killed)
    with pytest.raises(RuntimeError):
        Projector(store, read_models, batch_size=10_000).step()
    monkeypatch.undo()
    alert_events = store.count_events() - events_stored
    assert alert_events == 2  # appended before the commit that failed
    assert _checkpoint(read_models) == Cursor.START
    devices = read_models.tables.devices
    with read_models.engine.connect() as connection:
        assert connection.execute(select(devices.c.device_id)).all() == []
    assert alert_rows(read_models) == []

    restarted = Projector(store, ReadModelStore(store_url), batch_size=10_000)
    while restarted.step():
        pass
    assert store.count_events() == events_stored + alert_events
    _assert_expected(restarted.read_models, vectors_dir)
    assert [(row[0], row[1], row[3]) for row in alert_rows(restarted.read_models)] == [
        ("HP-000012", "coverage_exceeded", "open"),
        ("HP-000013", "session_count_mismatch", "open"),
    ]
    restarted.read_models.close()
    read_models.close()


def test_devices_new_to_a_batch_are_loaded_through_its_own_connection(
    store: EventStore, store_url: str
) -> None:
    """A batch that brings devices the projector does not hold yet reads their folds,
    registry entries and custody through the one connection it commits with."""
    store.append(device_stream("HP-000001", 5))
    read_models = ReadModelStore(store_url)
    checkouts: list[int] = []

    def counted(*_: Any) -> None:
        checkouts.append(1)

    projector = Projector(store, read_models, batch_size=5)
    event.listen(read_models.engine, "checkout", counted)
    assert projector.step() == 5  # the first batch: no fold held
    store.append(device_stream("HP-000002", 5))
    assert projector.step() == 5  # a device new beside the ones held
    assert len(checkouts) == 2
    read_models.close()


def _checkpoint_and_a_refused_row(read_models: ReadModelStore) -> None:
    """A checkpoint and then a row PostgreSQL refuses, pipelined: the refusal is read
    only when the pipeline ends."""
    with read_models.engine.connect() as connection:
        with read_models.pipelined(connection):
            save_checkpoint(connection, PROJECTOR, Cursor(1, 1))
            connection.execute(
                read_models.tables.registry.insert().values(device_id=None, registered=False)
            )
        connection.commit()


def test_a_pipelined_write_fails_as_sqlalchemy_and_commits_nothing(postgres_url: str) -> None:
    """A batch's writes go to PostgreSQL without waiting for each answer: one refused
    is raised as SQLAlchemy's error (as every other statement's, so the projector
    tells a database away from a fault as before) and nothing of the batch is stored."""
    read_models = ReadModelStore(postgres_url)
    with pytest.raises(sqlalchemy.exc.IntegrityError):
        _checkpoint_and_a_refused_row(read_models)
    assert _checkpoint(read_models) == Cursor.START
    read_models.close()
