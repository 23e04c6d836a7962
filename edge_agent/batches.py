"""Event batches on the wire (DESIGN §4), built from the outbox's stored bytes."""

from edge_agent.outbox import OutboxEntry


def batch_payload(device_id: str, entries: list[OutboxEntry]) -> bytes:
    """A wire batch built from stored event bytes, so resends are byte-identical."""
    events = b",".join(entry.wire for entry in entries)
    return b'{"device_id":"' + device_id.encode() + b'","events":[' + events + b"]}"


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
