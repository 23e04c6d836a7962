"""An event together with the exact canonical bytes its hash covers."""

from datetime import datetime
from typing import Any, Final
from uuid import UUID

import orjson

from schemas.canonical import canonical_body, sha256_hex
from schemas.events import EVENT_ADAPTER, Event
from schemas.streams import device_stream


class SealedEvent:
    """A validated event: its envelope (the columns the store keeps), the canonical
    JSON of it without ``hash`` (``body``), and the stream it belongs to.
    ``sha256(body) == hash`` always holds: it is checked when an event is decoded and
    established when one is sealed.

    The ``Event`` model is built on first use of ``event``, from ``body`` and
    ``hash``: the gateway validates every event it receives but stores only the
    envelope and the bytes, so it never pays for models nobody reads.  Read-only
    (``Final``); a plain slotted class rather than a frozen dataclass because one is
    made for every event received, and a frozen dataclass's ``__init__`` costs five
    times as much.
    """

    __slots__ = (
        "_event",
        "body",
        "device_id",
        "event_id",
        "hash",
        "occurred_at",
        "prev_hash",
        "seq",
        "stream_id",
        "type",
    )

    # Positional: the gateway makes one for every event it receives.
    def __init__(  # noqa: PLR0913, PLR0917
        self,
        device_id: str,
        seq: int,
        event_id: UUID,
        type: str,  # noqa: A002 - the wire's own name for it
        occurred_at: datetime,
        hash: str,  # noqa: A002 - the wire's own name for it
        prev_hash: str,
        body: bytes,
        stream_id: str,
        event: Event | None = None,
    ) -> None:
        self.device_id: Final = device_id
        self.seq: Final = seq
        self.event_id: Final = event_id
        self.type: Final = type
        self.occurred_at: Final = occurred_at
        self.hash: Final = hash
        self.prev_hash: Final = prev_hash
        self.body: Final = body
        self.stream_id: Final = stream_id
        self._event = event

    @classmethod
    def of(cls, event: Event, body: bytes, stream_id: str) -> "SealedEvent":
        """From a validated model whose hash is that of ``body``."""
        return cls(
            event.device_id,
            event.seq,
            event.event_id,
            event.type,
            event.occurred_at,
            event.hash,
            event.prev_hash,
            body,
            stream_id,
            event,
        )

    @property
    def event(self) -> Event:
        """The event's model, validated from ``body`` and ``hash`` on first use."""
        event = self._event
        if event is None:
            document = orjson.loads(self.body)
            document["hash"] = self.hash
            event = self._event = EVENT_ADAPTER.validate_python(document)
        return event

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SealedEvent):
            return NotImplemented
        # ``body`` and ``hash`` are the whole event; every other member is drawn from them.
        return (self.hash, self.body, self.stream_id) == (other.hash, other.body, other.stream_id)

    def __hash__(self) -> int:
        return hash((self.hash, self.stream_id))

    def __repr__(self) -> str:
        return (
            f"SealedEvent(stream_id={self.stream_id!r}, seq={self.seq}, type={self.type!r}, "
            f"hash={self.hash!r})"
        )

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
    return SealedEvent.of(event, body, stream_id or device_stream(event.device_id))


def unseal(body: bytes, event_hash: str, stream_id: str) -> SealedEvent:
    """Rebuild a stored event from its body and hash (trusted: the store verified both)."""
    document = orjson.loads(body)
    document["hash"] = event_hash
    return SealedEvent.of(EVENT_ADAPTER.validate_python(document), body, stream_id)
