"""Event batches on the wire (DESIGN §4), built from the outbox's stored bytes."""

from typing import Final, Protocol

import orjson

from edge_agent.outbox import OutboxBatch, OutboxEntry
from schemas.seals import BatchSeal

SEAL_OVERHEAD: Final = 160
"""Bytes a ``seal`` member adds to a batch (key id, seq, 86-character signature)."""


class Sealer(Protocol):
    """A device's seal key (``seal_keys.SealKey``), as the agent uses it."""

    def seal(self, device_id: str, seq: int, event_hash: str) -> BatchSeal: ...


def batch_payload(
    device_id: str, entries: list[OutboxEntry] | OutboxBatch, sealer: Sealer | None = None
) -> bytes:
    """A wire batch built from stored event bytes, so resends carry the same events;
    sealed (DESIGN §4.1) over its last event when the device holds a key."""
    if isinstance(entries, OutboxBatch):
        wires, last_seq = entries.wires, entries.last_seq
    else:
        wires = [entry.wire for entry in entries]
        last_seq = entries[-1].seq if entries else 0
    head = b'{"device_id":"' + device_id.encode() + b'","events":['
    if sealer is None or not wires:
        tail = b"]}"
    else:
        seal = sealer.seal(device_id, last_seq, orjson.loads(wires[-1])["hash"])
        tail = b'],"seal":' + seal.model_dump_json().encode() + b"}"
    if not wires:
        return head + tail
    # One join copies the events once (a batch is up to 256 KiB): the envelope is
    # glued to the first and last of them, which are small.
    if len(wires) == 1:
        return head + wires[0] + tail
    return b",".join([head + wires[0], *wires[1:-1], wires[-1] + tail])


def split_batches(
    entries: list[OutboxEntry], max_events: int, max_bytes: int
) -> list[list[OutboxEntry]]:
    """Consecutive batches within both limits (a lone oversized event still goes alone)."""
    batches: list[list[OutboxEntry]] = [[]]
    size = 0
    for entry in entries:
        full = len(batches[-1]) >= max_events or size + len(entry.wire) + 1 > max_bytes
        if batches[-1] and full:
            batches.append([])
            size = 0
        batches[-1].append(entry)
        size += len(entry.wire) + 1
    return [batch for batch in batches if batch]
