"""A follower of a few streams or types reads their events only, and learns how far it got."""

import uuid

from schemas import GENESIS_HASH, SealedEvent, seal
from schemas.streams import alert_stream
from services.eventstore import Cursor, EventStore
from tests.support.streams import device_stream, event_fields


def _alert(device_id: str) -> list[SealedEvent]:
    alert_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"prefixed:{device_id}"))
    data = {
        "alert_id": alert_id, "rule": "device_fault", "subject": "E-VAC-LOW",
        "severity": "critical", "clinic_id": "clinic-a", "message": "vacuum low",
        "context": {"fault_code": "E-VAC-LOW"},
    }  # fmt: skip
    fields = event_fields(device_id, 1, GENESIS_HASH, "alert.raised", data)
    return [seal(fields, alert_stream(alert_id))]


def test_only_prefixed_streams_are_handed_over_and_the_cursor_passes_the_rest(
    store: EventStore,
) -> None:
    """Read 3 at a time, the prefixed events come in global order, none twice, and
    each answer's cursor is the last event looked at, whichever stream it is of."""
    store.append(device_stream("HP-000001", 4))
    store.append(_alert("HP-000001"))
    store.append(device_stream("HP-000002", 5))
    store.append(_alert("HP-000002"))
    store.append(device_stream("HP-000003", 2))
    full = store.read(Cursor.START, 100)
    found, cursors, cursor = [], [], Cursor.START
    while True:
        events, through = store.read_matching(cursor, 3, stream_prefix="alert:")
        if through == cursor:
            assert events == []
            break
        found += events
        cursors.append(through)
        cursor = through
    alerts = [event for event in full if event.stream_id.startswith("alert:")]
    assert [(e.cursor, e.stream_id, e.hash, e.body) for e in found] == [
        (e.cursor, e.stream_id, e.hash, e.body) for e in alerts
    ]
    assert len(found) == 2
    assert cursors == [full[n].cursor for n in (2, 5, 8, 11, 12)]


def test_nothing_after_the_end_leaves_the_cursor_where_it_was(store: EventStore) -> None:
    store.append(device_stream("HP-000001", 2))
    end = store.read(Cursor.START, 10)[-1].cursor
    assert store.read_matching(end, 10, stream_prefix="alert:") == ([], end)
    assert store.read_matching(Cursor.START, 10, stream_prefix="alert:") == ([], end)
    assert store.read_matching(Cursor.START, 10, types={"alert.raised"}) == ([], end)


def test_only_the_types_asked_for_are_handed_over_in_order(store: EventStore) -> None:
    """Read 4 at a time, the events of the types asked for (in any stream, or in the
    streams of a prefix too) come in global order, none twice, none missed."""
    store.append(device_stream("HP-000001", 6))
    store.append(_alert("HP-000001"))
    store.append(device_stream("HP-000002", 7))
    full = store.read(Cursor.START, 100)
    for types, prefix in (
        ({"session.started", "alert.raised"}, ""),
        ({"session.started", "cores.punched"}, "HP-000002"),
        ({"cartridge.installed"}, "alert:"),
        (set(), ""),
    ):
        found, cursor = [], Cursor.START
        while True:
            events, through = store.read_matching(cursor, 4, stream_prefix=prefix, types=types)
            if through == cursor:
                break
            found += events
            cursor = through
        assert cursor == full[-1].cursor
        expected = [e for e in full if e.type in types and e.stream_id.startswith(prefix)]
        assert [(e.cursor, e.type, e.body) for e in found] == [
            (e.cursor, e.type, e.body) for e in expected
        ]
