"""The notifier follows ingest without a commit for every append: events of other
streams are passed over in the store, and its checkpoint moves past them alone at
most once a second, while each notice still goes out on the first step after it."""

import time
import uuid
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from schemas import clinic_alerts_topic
from services.delivery import NOTIFIER, Notifier, NotifierOptions
from services.eventstore import Cursor, EventStore, load_checkpoint
from services.projections.read_store import ReadModelStore
from tests.integration.test_delivery import MASTER_KEY, POLICY, alert_events
from tests.support.mosquitto import TemporaryMosquitto
from tests.support.streams import device_stream
from tests.support.subscriber import RecordingSubscriber
from transport import BrokerAddress


@pytest.fixture(scope="module")
def broker() -> Iterator[TemporaryMosquitto]:
    with TemporaryMosquitto() as mosquitto:
        yield mosquitto


def _notifier(store: EventStore, database: ReadModelStore, broker: TemporaryMosquitto) -> Notifier:
    options = NotifierOptions(policy=POLICY, client_id=f"notifier-{uuid.uuid4().hex[:8]}")
    return Notifier(store, database.engine, BrokerAddress.parse(broker.url), MASTER_KEY, options)


def _checkpoint(database: ReadModelStore) -> Cursor:
    with database.engine.connect() as connection:
        return load_checkpoint(connection, NOTIFIER)


def _event_ids(subscriber: RecordingSubscriber) -> list[str]:
    notices: list[dict[str, Any]] = [orjson.loads(payload) for _, payload in subscriber.messages]
    return [notice["event_id"] for notice in notices]


def _wait_for(subscriber: RecordingSubscriber, count: int) -> None:
    deadline = time.monotonic() + 10
    while len(subscriber.messages) < count and time.monotonic() < deadline:
        time.sleep(0.02)


@pytest.mark.slow
def test_other_streams_pass_without_a_commit_and_no_notice_is_lost_or_doubled(
    store: EventStore, database: ReadModelStore, broker: TemporaryMosquitto
) -> None:
    store.append(device_stream("HP-000001", 6))
    first = alert_events(str(uuid.uuid4()), "clinic-a")
    store.append(first)
    store.append(device_stream("HP-000002", 4))
    topic = clinic_alerts_topic("clinic-a")
    notifier = _notifier(store, database, broker)
    with RecordingSubscriber(broker.port, topic, "passing") as clinic:
        try:
            assert notifier.step() == 3
            head = store.read(Cursor.START, 100)[-1].cursor
            assert _checkpoint(database) == head  # past the device events after them too
            _wait_for(clinic, 3)
            # Ingest goes on: the next steps pass its events without a commit each.
            store.append(device_stream("HP-000003", 5))
            assert notifier.step() == 1
            assert _checkpoint(database) == head
            assert notifier.step() == 0  # read on from where it passed, not again
            second = alert_events(str(uuid.uuid4()), "clinic-a")
            store.append(second)
            assert notifier.step() == 3  # the notice waits for no timer
            _wait_for(clinic, 6)
            assert _checkpoint(database) == store.read(Cursor.START, 100)[-1].cursor
        finally:
            notifier.close()
        # A restart from the stored checkpoint publishes nothing again.
        restarted = _notifier(store, database, broker)
        try:
            assert restarted.step() == 0
        finally:
            restarted.close()
        time.sleep(0.3)
    assert _event_ids(clinic) == [str(event.event_id) for event in [*first, *second]]


@pytest.mark.slow
def test_a_restart_reads_again_what_was_only_passed_in_memory(
    store: EventStore, database: ReadModelStore, broker: TemporaryMosquitto
) -> None:
    """Passed events whose checkpoint was not yet saved are read again after a crash,
    and the notice after them goes out once."""
    store.append(device_stream("HP-000001", 3))
    notifier = _notifier(store, database, broker)
    try:
        assert notifier.step() == 1  # the first pass is saved
        saved = _checkpoint(database)
        store.append(device_stream("HP-000002", 3))
        assert notifier.step() == 1
        assert _checkpoint(database) == saved
    finally:
        notifier.close()  # a crash: what it passed since is not stored
    alert = alert_events(str(uuid.uuid4()), "clinic-b")
    store.append(alert)
    with RecordingSubscriber(broker.port, clinic_alerts_topic("clinic-b"), "again") as clinic:
        restarted = _notifier(store, database, broker)
        try:
            assert restarted.step() == 3
            assert restarted.step() == 0
        finally:
            restarted.close()
        _wait_for(clinic, 3)
        time.sleep(0.3)
    assert _event_ids(clinic) == [str(event.event_id) for event in alert]
    assert _checkpoint(database) == store.read(Cursor.START, 100)[-1].cursor
