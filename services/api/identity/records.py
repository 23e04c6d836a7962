"""Reading a device's identity from its registry stream, and writing the events that
change it: several at once, chained after the stream's head under its lock
(``EventStore.append_next``), each decided against the stream as it stands then."""

import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
from pydantic import ValidationError

from schemas import GENESIS_HASH, SealedEvent, describe, seal, utc_text
from schemas.device_identity import DeviceIdentity, RegistryFact, fold_identity
from schemas.streams import registry_stream
from services.api.problems import Problem
from services.eventstore import EventStore, StoredEvent
from services.eventstore.keyrings import StreamRead

Facts = Sequence[tuple[str, dict[str, Any]]]
"""(type, data) of the events to record, in order."""


def load_identity(store: StreamRead, device_id: str) -> DeviceIdentity:
    """The device's identity from its registry stream (a handful of events)."""
    events = store.read_stream(registry_stream(device_id))
    return fold_identity(
        device_id,
        (
            RegistryFact(event.seq, event.type, event.occurred_at, orjson.loads(event.body)["data"])
            for event in events
        ),
    )


def device_author(device_id: str, what: str) -> str:
    """Who recorded what a device asked for itself: the device, by the proof it gave."""
    return f"device:{device_id} ({what})"


def record(
    store: EventStore,
    device_id: str,
    decide: Callable[[DeviceIdentity], Facts],
    *,
    now: datetime | None = None,
) -> list[SealedEvent]:
    """Append what ``decide`` makes of the device's identity as it stands under the
    registry stream's lock (it raises a ``Problem`` to refuse), all or nothing."""
    stream_id = registry_stream(device_id)
    appended: list[SealedEvent] = []

    def build(head: StoredEvent | None) -> list[SealedEvent]:
        facts = decide(load_identity(store, device_id))
        appended[:] = chain(stream_id, device_id, head, facts, now)
        return appended

    store.append_next(stream_id, build)
    return list(appended)


def chain(
    stream_id: str,
    device_id: str,
    head: StoredEvent | None,
    facts: Facts,
    now: datetime | None = None,
) -> list[SealedEvent]:
    """``facts`` as events of one moment, chained after ``head``."""
    seq, prev_hash = (0, GENESIS_HASH) if head is None else (head.seq, head.hash)
    moment = now or datetime.now(UTC)
    if head is not None and head.occurred_at > moment:
        moment = head.occurred_at  # a stream's times never run backwards
    events = []
    for kind, data in facts:
        seq += 1
        try:
            event = seal(
                {
                    "event_id": str(uuid.uuid4()), "device_id": device_id, "seq": seq,
                    "type": kind, "occurred_at": utc_text(moment), "schema_version": 1,
                    "data": data, "prev_hash": prev_hash,
                },
                stream_id,
            )  # fmt: skip
        except ValidationError as error:
            raise Problem(
                500, "not-recorded", "Not recorded", f"{kind}: {describe(error)}"
            ) from None
        events.append(event)
        prev_hash = event.hash
    return events
