"""A device's seal keys as its registry stream holds them now (DESIGN §4.1): what the
gateway checks seals against and what the audit verifies stored seals with."""

from typing import Protocol

import orjson

from schemas.seals import KEY_EVENT_TYPES, Keyring, fold_keyring
from schemas.streams import registry_stream
from services.eventstore.ports import StoredEvent


class StreamRead(Protocol):
    def read_stream(
        self, stream_id: str, from_seq: int = 1, to_seq: int | None = None, limit: int | None = None
    ) -> list[StoredEvent]: ...


def load_keyring(store: StreamRead, device_id: str) -> Keyring:
    """Fold the key events of the device's registry stream (a handful of events)."""
    events = store.read_stream(registry_stream(device_id))
    return fold_keyring(
        (event.type, orjson.loads(event.body)["data"])
        for event in events
        if event.type in KEY_EVENT_TYPES
    )
