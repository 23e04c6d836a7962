"""Facts: stored or wire events reduced to what the folds read.

Events reach the projections as already validated bytes (the gateway decoded them
and the store checked their hashes), so a fact is built straight from JSON with
orjson, without pydantic: replay has to fold tens of thousands of events a second.
Only ``occurred_at`` is parsed here; timestamps inside ``data`` stay RFC 3339 text
and are parsed by the fold that needs them.

``Fact`` is a ``NamedTuple`` rather than a frozen dataclass for the same reason: it
is as immutable, and builds in a quarter of the time (0.3 µs against 1.2 µs, the
frozen dataclass paying for eight ``object.__setattr__`` calls), which is a fifth of
the cost of turning a stored body into folded state.
"""

from collections.abc import Mapping
from datetime import datetime
from typing import Any, NamedTuple

import orjson


class Fact(NamedTuple):
    """One event of one device's stream, as the folds see it."""

    device_id: str
    seq: int
    type: str
    occurred_at: datetime
    """The device's clock: may be wrong, so it never decides order (``seq`` does)."""
    received_at: datetime | None
    """When the platform stored it; ``None`` for events that never went through a store."""
    hash: str
    prev_hash: str
    data: dict[str, Any]
    """The event's ``data`` as JSON values; timestamps are RFC 3339 text ending in ``Z``."""


def parse_timestamp(text: str) -> datetime:
    """An RFC 3339 UTC timestamp (``…Z``) as an aware ``datetime``.

    ``datetime.fromisoformat`` accepts the ``Z`` form from Python 3.11 and is a C
    function, an order of magnitude cheaper than a general RFC 3339 parser.
    """
    return datetime.fromisoformat(text)


def fact_from_wire(event: Mapping[str, Any], received_at: datetime | None = None) -> Fact:
    """A fact from an event as it travels in a batch or a vector file (with ``hash``)."""
    return Fact(
        event["device_id"],
        event["seq"],
        event["type"],
        datetime.fromisoformat(event["occurred_at"]),
        received_at,
        event["hash"],
        event["prev_hash"],
        event["data"],
    )


def fact_from_body(body: bytes, event_hash: str, received_at: datetime | None) -> Fact:
    """A fact from a stored event: its canonical body (the event without ``hash``), the
    hash the store keeps beside it, and the store's receive time."""
    event = orjson.loads(body)
    return Fact(
        event["device_id"],
        event["seq"],
        event["type"],
        datetime.fromisoformat(event["occurred_at"]),
        received_at,
        event_hash,
        event["prev_hash"],
        event["data"],
    )
