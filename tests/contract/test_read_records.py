"""The replay's lean read gives the same events, in the same order, as ``read``."""

from services.eventstore import Cursor, EventStore
from tests.support.streams import device_stream


def test_records_match_full_reads(store: EventStore) -> None:
    """Lean records read in small batches match a full read, field for field and in order."""
    for device in ("HP-000001", "HP-000002"):
        store.append(device_stream(device, 7))
    full = store.read(Cursor.START, 100)
    records, cursor = [], Cursor.START
    while batch := store.read_records(cursor, 3):
        records += batch
        cursor = batch[-1].cursor
    assert [(r.cursor, r.stream_id, r.device_id, r.seq, r.type, r.received_at, r.hash, r.body)
            for r in records] == [
        (e.cursor, e.stream_id, e.device_id, e.seq, e.type, e.received_at, e.hash, e.body)
        for e in full
    ]  # fmt: skip
    assert len(records) == 14
