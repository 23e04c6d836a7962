"""A reading sealed into its device's hash chain: the one place a reading becomes an event.

Pure: the outbox calls it inside its transaction, and simulated fleets call it to build
the streams real handpieces would have sent.
"""

from collections.abc import Callable, Iterable
from uuid import UUID

from edge_agent.device import DeviceReading
from schemas import GENESIS_HASH, SealedEvent, seal, utc_text


def seal_reading(
    device_id: str, seq: int, prev_hash: str, reading: DeviceReading, event_id: UUID | str
) -> SealedEvent:
    """The event ``reading`` becomes at ``seq`` after ``prev_hash``; raises
    ``ValidationError`` where the wire schema refuses it."""
    return seal(
        {
            "event_id": str(event_id),
            "device_id": device_id,
            "seq": seq,
            "type": reading.type,
            "occurred_at": utc_text(reading.occurred_at),
            "schema_version": 1,
            "data": dict(reading.data),
            "prev_hash": prev_hash,
        }
    )


def chain_readings(
    device_id: str,
    readings: Iterable[DeviceReading],
    event_id: Callable[[int], UUID | str],
    *,
    after_seq: int = 0,
    after_hash: str = GENESIS_HASH,
) -> list[SealedEvent]:
    """``readings`` sealed in order, each linked to the one before, continuing the chain
    whose head is (``after_seq``, ``after_hash``); ``event_id`` names the event at a seq."""
    chain: list[SealedEvent] = []
    seq, prev_hash = after_seq, after_hash
    for reading in readings:
        seq += 1
        event = seal_reading(device_id, seq, prev_hash, reading, event_id(seq))
        chain.append(event)
        prev_hash = event.hash
    return chain
