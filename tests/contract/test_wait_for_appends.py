"""A waiting reader wakes up when another connection appends, and not before its
timeout otherwise."""

import threading
import time
from typing import Any

import psycopg

from schemas import SealedEvent, Severity
from schemas.platform_events import AlertRule
from services.alerts import events as alert_events
from services.alerts.conditions import Condition
from services.delivery.notice import ALERT_STREAM_PREFIX
from services.eventstore import Cursor, EventStore, open_event_store
from services.eventstore.postgres import APPENDS_CHANNEL
from tests.support.streams import EPOCH, device_stream


def test_a_waiting_reader_wakes_on_another_writers_append(
    store: EventStore, store_url: str
) -> None:
    """A waiting reader sleeps out its timeout, and wakes soon after another writer appends."""
    store.wait_for_appends(0)  # start listening
    started = time.monotonic()
    store.wait_for_appends(0.3)  # nothing appended: waits out the timeout
    assert time.monotonic() - started >= 0.25

    def append_soon() -> None:
        time.sleep(0.2)
        writer = open_event_store(store_url)
        writer.append(device_stream("HP-000001", 3))
        writer.close()

    threading.Thread(target=append_soon).start()
    started = time.monotonic()
    store.wait_for_appends(10)
    waited = time.monotonic() - started
    assert 0.15 <= waited < 5


def _append_soon(url: str, events: list[SealedEvent]) -> None:
    def append() -> None:
        time.sleep(0.2)
        writer = open_event_store(url)
        writer.append(events)
        writer.close()

    threading.Thread(target=append).start()


def _alert() -> SealedEvent:
    low = Condition(AlertRule.NEEDLE_LIFE_LOW, "CT-00001", Severity.WARNING, "81 % worn", EPOCH)
    return alert_events.raised("HP-000001", "clinic-a", low)


def _alert_behind(older: psycopg.Connection[Any], store: EventStore, url: str) -> SealedEvent:
    """An alert appended while ``older``'s transaction is in flight, ``store``
    listening from before either."""
    store.wait_for_appends(0, stream_prefix=ALERT_STREAM_PREFIX)  # start listening
    older.execute("SELECT pg_current_xact_id()")  # an older transaction, in flight
    alert = _alert()
    writer = open_event_store(url)
    writer.append([alert])
    writer.close()
    return alert


def test_a_reader_of_alert_streams_wakes_on_an_alerts_append(
    store: EventStore, store_url: str
) -> None:
    store.wait_for_appends(0, stream_prefix=ALERT_STREAM_PREFIX)  # start listening
    _append_soon(store_url, [_alert()])
    started = time.monotonic()
    store.wait_for_appends(10, stream_prefix=ALERT_STREAM_PREFIX)
    assert 0.15 <= time.monotonic() - started < 5


def test_on_postgresql_a_reader_of_alert_streams_sleeps_through_devices_appends(
    postgres_url: str,
) -> None:
    """Each append names its streams' kinds, so the notifier is not woken by the
    devices' hundreds of appends a second; an alert's append still wakes it."""
    store = open_event_store(postgres_url)
    try:
        store.wait_for_appends(0, stream_prefix=ALERT_STREAM_PREFIX)  # start listening
        _append_soon(postgres_url, device_stream("HP-000001", 3))
        started = time.monotonic()
        store.wait_for_appends(1.5, stream_prefix=ALERT_STREAM_PREFIX)
        assert time.monotonic() - started >= 1.4  # the device's append did not wake it
        _append_soon(postgres_url, [_alert()])
        started = time.monotonic()
        store.wait_for_appends(10, stream_prefix=ALERT_STREAM_PREFIX)
        assert 0.15 <= time.monotonic() - started < 5
    finally:
        store.close()


def test_on_postgresql_an_alert_out_of_sight_behind_a_device_append_wakes_its_reader_again(
    postgres_url: str,
) -> None:
    """An alert committed while an older device append is still in flight is out of
    a reader's sight until that append commits (the order never skips): the reader
    of alert streams sleeps on (a read would find nothing), and the device append's
    commit wakes it, not its timeout."""
    store = open_event_store(postgres_url)
    older = psycopg.connect(postgres_url)
    try:
        alert = _alert_behind(older, store, postgres_url)
        started = time.monotonic()
        store.wait_for_appends(1.0, stream_prefix=ALERT_STREAM_PREFIX)
        assert time.monotonic() - started >= 0.9
        assert store.read_matching(Cursor(0, 0), stream_prefix=ALERT_STREAM_PREFIX)[0] == []

        def commit_soon() -> None:
            time.sleep(0.2)
            older.execute("SELECT pg_notify(%s, '')", (APPENDS_CHANNEL,))
            older.commit()

        threading.Thread(target=commit_soon).start()
        started = time.monotonic()
        store.wait_for_appends(10, stream_prefix=ALERT_STREAM_PREFIX)
        assert 0.15 <= time.monotonic() - started < 5
        seen = store.read_matching(Cursor(0, 0), stream_prefix=ALERT_STREAM_PREFIX)[0]
        assert [event.hash for event in seen] == [alert.hash]
    finally:
        older.close()
        store.close()


def test_on_postgresql_an_alert_awaited_behind_an_append_that_rolls_back_wakes_its_reader(
    postgres_url: str,
) -> None:
    """The older transaction an alert waits behind may end without a notification
    (rolled back, or it appended nothing): the reader looks at the horizon again
    while it waits, and wakes soon after, not at its timeout."""
    store = open_event_store(postgres_url)
    older = psycopg.connect(postgres_url)
    try:
        alert = _alert_behind(older, store, postgres_url)

        def roll_back_soon() -> None:
            time.sleep(0.3)
            older.rollback()  # ends without notifying anyone

        threading.Thread(target=roll_back_soon).start()
        started = time.monotonic()
        store.wait_for_appends(10, stream_prefix=ALERT_STREAM_PREFIX)
        assert 0.25 <= time.monotonic() - started < 1
        seen = store.read_matching(Cursor(0, 0), stream_prefix=ALERT_STREAM_PREFIX)[0]
        assert [event.hash for event in seen] == [alert.hash]
    finally:
        older.close()
        store.close()
