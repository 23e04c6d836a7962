"""Punch readings for an outbox, and every batch its link would take from a cursor."""

from datetime import datetime

from edge_agent.device import DeviceReading
from edge_agent.outbox import Outbox, OutboxBatch
from tests.support.streams import punch_data


def punch_readings(first: int, last: int, at: datetime) -> list[DeviceReading]:
    return [DeviceReading("cores.punched", at, punch_data(n)) for n in range(first, last + 1)]


def drained(
    outbox: Outbox, device_id: str, after_seq: int, max_events: int, max_bytes: int
) -> list[OutboxBatch]:
    """The batches ``next_batch`` gives one after the other until nothing is left."""
    batches = []
    while (batch := outbox.next_batch(device_id, after_seq, max_events, max_bytes)) is not None:
        batches.append(batch)
        after_seq = batch.last_seq
    return batches
