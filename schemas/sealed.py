"""An event together with the exact canonical bytes its hash covers."""

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import orjson

from schemas.canonical import canonical_body, sha256_hex
from schemas.events import EVENT_ADAPTER, Event
from schemas.streams import device_stream


@dataclass(frozen=True, slots=True)
class SealedEvent:
    """A validated event, the canonical JSON of it without ``hash`` (``body``), and the
    stream it belongs to.  ``sha256(body) == event.hash`` always holds: it is checked
    when an event is decoded and established when one is sealed."""

    event: Event
    body: bytes
    stream_id: str

    @property
    def device_id(self) -> str:
        return self.event.device_id

    @property
    def seq(self) -> int:
        return self.event.seq

    @property
    def event_id(self) -> UUID:
        return self.event.event_id

    @property
    def type(self) -> str:
        return self.event.type

    @property
    def occurred_at(self) -> datetime:
        return self.event.occurred_at

    @property
    def hash(self) -> str:
        return self.event.hash

    @property
    def prev_hash(self) -> str:
        return self.event.prev_hash

    def wire_json(self) -> bytes:
        """The event as it travels in a batch: the body with its ``hash`` added back."""
        return orjson.dumps(self.to_wire())

    def to_wire(self) -> dict[str, Any]:
        document: dict[str, Any] = orjson.loads(self.body)
        document["hash"] = self.hash
        return document


def seal(unsealed: dict[str, Any], stream_id: str | None = None) -> SealedEvent:
    """Hash an event given without ``hash`` and validate it; raises ``ValidationError``.

    ``unsealed`` holds JSON values (timestamps as RFC 3339 text), exactly what will be
    hashed.  The stream defaults to the device's own.
    """
    body = canonical_body(unsealed)
    event = EVENT_ADAPTER.validate_python({**unsealed, "hash": sha256_hex(body)})
    return SealedEvent(
        event=event, body=body, stream_id=stream_id or device_stream(event.device_id)
    )


def unseal(body: bytes, event_hash: str, stream_id: str) -> SealedEvent:
    """Rebuild a stored event from its body and hash (trusted: the store verified both)."""
    document = orjson.loads(body)
    document["hash"] = event_hash
    return SealedEvent(
        event=EVENT_ADAPTER.validate_python(document), body=body, stream_id=stream_id
    )
