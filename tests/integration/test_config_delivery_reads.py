"""Configuration delivery follows the store past the events it does not fold (punches,
sessions, alerts) without reading them, and stops when it has caught up."""

import threading
import time
from typing import Any

import pytest

from services.config_delivery import ConfigDelivery
from services.config_delivery.database import open_engine
from services.config_delivery.loop import CHECKPOINT
from services.eventstore import Cursor, EventStore, StoredEvent, load_checkpoint
from tests.support.streams import device_stream


def test_the_checkpoint_passes_what_is_not_folded_and_then_rests(
    store: EventStore, store_url: str
) -> None:
    store.append(device_stream("HP-000601", 12))
    store.append(device_stream("HP-000602", 7))
    last = store.read(Cursor.START, 100)[-1].cursor
    engine = open_engine(store_url)
    try:
        delivery = ConfigDelivery(store, engine, None)
        assert delivery.step() == 1  # moved on, folding nothing
        with engine.connect() as connection:
            assert load_checkpoint(connection, CHECKPOINT) == last
        assert delivery.step() == 0
        assert delivery.book.devices == {}
    finally:
        engine.dispose()


def test_a_trickle_of_others_events_is_passed_in_gathered_turns(
    store: EventStore, store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    turns: list[int] = []
    read_matching = store.read_matching

    def counted(after: Cursor, limit: int = 1000, **which: Any) -> tuple[list[StoredEvent], Cursor]:
        found, through = read_matching(after, limit, **which)
        if through != after:
            turns.append(len(found))
        return found, through

    monkeypatch.setattr(store, "read_matching", counted)
    engine = open_engine(store_url)
    stop = threading.Event()
    delivery = ConfigDelivery(store, engine, None)
    loop = threading.Thread(target=delivery.run, args=(stop,), kwargs={"gather_s": 0.5})
    loop.start()
    try:
        events = device_stream("HP-000603", 100)
        for event in events:  # one append every 20 ms for 2 s
            store.append([event])
            time.sleep(0.02)
        last = store.read(Cursor.START, 200)[-1].cursor
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with engine.connect() as connection:
                if load_checkpoint(connection, CHECKPOINT) == last:
                    break
            time.sleep(0.05)
        with engine.connect() as connection:
            assert load_checkpoint(connection, CHECKPOINT) == last
    finally:
        stop.set()
        loop.join(timeout=10)
        engine.dispose()
    # About one turn a gathering (2 s / 0.5 s), where one an append would be 100.
    assert 1 <= len(turns) <= 12, turns
