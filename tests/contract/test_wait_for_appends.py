"""A waiting reader wakes up when another connection appends, and not before its
timeout otherwise."""

import threading
import time

from services.eventstore import EventStore, open_event_store
from tests.support.streams import device_stream


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
