"""``EventStore.stream_ids``: every stream with an event, once, in name order."""

from schemas import seal
from services.eventstore import EventStore
from tests.support.streams import device_stream, event_fields


def test_an_empty_store_has_no_streams(store: EventStore) -> None:
    """Nothing appended, no stream names."""
    assert store.stream_ids() == []


def test_every_stream_is_named_once_in_order(store: EventStore) -> None:
    """Device and platform streams alike are listed once each, sorted, however many
    events they hold."""
    for device_id in ("HP-000003", "HP-000001", "HP-000002"):
        store.append(device_stream(device_id, 1 if device_id == "HP-000002" else 12))
    registered = seal(
        event_fields(
            "HP-000001", 1, "0" * 64, "device.registered", {"model": "CX-1", "registered_by": "ops"}
        ),
        "registry:HP-000001",
    )
    store.append([registered])
    assert store.stream_ids() == ["HP-000001", "HP-000002", "HP-000003", "registry:HP-000001"]
