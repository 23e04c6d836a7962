"""Decide what an append does with each event, given what the store already holds.

Pure, so both adapters share one set of rules and the rules are tested without a
database.  The adapter fetches the stored neighbours of the batch (each run of
consecutive seqs, widened by one on either side) under a per-stream lock, calls
``plan_append``, then writes the plan.
"""

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import groupby

from schemas import GENESIS_HASH, Rejection, RejectionReason, SealedEvent
from schemas.streams import is_device_stream
from schemas.topics import DeviceChannel, device_topic
from services.eventstore.ports import DeadLetter

StreamKey = tuple[str, int]


@dataclass(frozen=True, slots=True)
class StoredLink:
    hash: str
    prev_hash: str


@dataclass(frozen=True, slots=True)
class SeqRange:
    stream_id: str
    first: int
    last: int


@dataclass(frozen=True, slots=True)
class AppendPlan:
    inserts: tuple[SealedEvent, ...]
    duplicates: int
    rejected: tuple[DeadLetter, ...]


def neighbour_ranges(events: Iterable[SealedEvent]) -> list[SeqRange]:
    """Seq ranges whose stored rows ``plan_append`` needs: every run of consecutive
    seqs in the batch, one wider on each side."""
    keys = sorted({(event.stream_id, event.seq) for event in events})
    ranges: list[SeqRange] = []
    for stream_id, stream_keys in groupby(keys, key=lambda key: key[0]):
        seqs = [seq for _, seq in stream_keys]
        start = previous = seqs[0]
        for seq in seqs[1:]:
            if seq != previous + 1:
                ranges.append(SeqRange(stream_id, start - 1, previous + 1))
                start = seq
            previous = seq
        ranges.append(SeqRange(stream_id, start - 1, previous + 1))
    return ranges


def plan_append(
    events: Sequence[SealedEvent], stored: Mapping[StreamKey, StoredLink]
) -> AppendPlan:
    """Split ``events`` into new events, duplicates and integrity rejections."""
    known = dict(stored)
    inserts: list[SealedEvent] = []
    rejected: list[DeadLetter] = []
    duplicates = 0
    for event in sorted(events, key=lambda event: (event.stream_id, event.seq)):
        key = (event.stream_id, event.seq)
        existing = known.get(key)
        if existing is not None and existing.hash == event.hash:
            duplicates += 1
            continue
        problem = _integrity_problem(event, existing, known)
        if problem is not None:
            rejected.append(_dead_letter(event, problem))
            continue
        known[key] = StoredLink(event.hash, event.prev_hash)
        inserts.append(event)
    return AppendPlan(tuple(inserts), duplicates, tuple(rejected))


def _integrity_problem(
    event: SealedEvent, existing: StoredLink | None, known: Mapping[StreamKey, StoredLink]
) -> str | None:
    if existing is not None:
        return (
            f"seq conflict: seq {event.seq} of {event.stream_id} is already stored "
            f"with hash {existing.hash}, this one has {event.hash}"
        )
    if event.seq == 1 and event.prev_hash != GENESIS_HASH:
        return "chain break: seq 1 must have a prev_hash of 64 zeros"
    predecessor = known.get((event.stream_id, event.seq - 1))
    if predecessor is not None and predecessor.hash != event.prev_hash:
        return f"chain break: prev_hash does not match the stored hash of seq {event.seq - 1}"
    successor = known.get((event.stream_id, event.seq + 1))
    if successor is not None and successor.prev_hash != event.hash:
        return f"chain break: stored seq {event.seq + 1} does not point at this event's hash"
    return None


def _dead_letter(event: SealedEvent, problem: str) -> DeadLetter:
    rejection = Rejection(
        RejectionReason.INTEGRITY, problem, event.wire_json(), event.device_id, event.seq
    )
    return DeadLetter(topic=source_topic(event.stream_id, event.device_id), rejection=rejection)


def source_topic(stream_id: str, device_id: str) -> str:
    """The topic an event of this stream arrives on (platform streams have none)."""
    if is_device_stream(stream_id):
        return device_topic(device_id, DeviceChannel.EVENTS)
    return f"platform/{stream_id}"
