"""Decide what an append does with each event, given what the store already holds.

Pure, so every adapter shares one set of rules and the rules are tested without a
database.  Under a per-stream lock the adapter fetches, for the streams of the batch,
the stored neighbours of the batch (each run of consecutive seqs, widened by one on
either side), each stream's stored head, and its held events from the batch's first
seq on (``custody_from``), with the stored successor of each; it calls
``plan_append``, then writes the plan.

Chain custody (DESIGN §4.2)
---------------------------
An event joins its stream only when it links to its stored predecessor (seq 1: to
the zero hash), so a stream is stored as one linked chain 1..head (streams stored
before custody may still have holes, which the successor check keeps honest).  The
candidates for each seq (held ones first, oldest first, then the batch's) are
settled in seq order:

* seq stored: the same hash is a duplicate, another hash a conflict;
* predecessor stored: the first candidate that links joins the stream (a held one is
  promoted, in this very transaction); one that does not link is refused, a batch
  event as a chain break, a held one as a custody incident;
* predecessor not stored: the candidate is held (and a held one stays held).

A refused candidate condemns its descendants: the only event its successor can link
to will never be stored, so a candidate at the next seq whose ``prev_hash`` is the
refused hash is refused in the same run, whatever else it is, and every dead letter
of a run of several events carries one ``chain custody:`` detail naming its seqs
(one incident, never a spliced chain).  Since the candidates of a seq are settled in
the append that stores its predecessor, a held event always sits past a hole.
"""

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import groupby
from typing import NamedTuple
from uuid import UUID

import orjson

from schemas import GENESIS_HASH, Rejection, RejectionReason, SealedEvent
from schemas.streams import is_device_stream
from schemas.topics import DeviceChannel, device_topic
from services.eventstore.ports import AppendResult, DeadLetter, StreamHead, StreamSeal

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


class EventRow(NamedTuple):
    """An event as a row of ``events`` (less its position and tx id) or of
    ``held_events``: the hashed bytes, the columns drawn from them, and when the
    platform received it.  A tuple: every event of every append becomes one."""

    stream_id: str
    device_id: str
    seq: int
    event_id: UUID
    type: str
    occurred_at: datetime
    received_at: datetime
    hash: str
    prev_hash: str
    body: bytes

    @classmethod
    def of(cls, sealed: SealedEvent, received_at: datetime) -> "EventRow":
        s = sealed  # the envelope columns it carries: no model is built for a row
        return cls(s.stream_id, s.device_id, s.seq, s.event_id, s.type, s.occurred_at,
                   received_at, s.hash, s.prev_hash, s.body)  # fmt: skip

    def wire_json(self) -> bytes:
        """The event as it travelled: the body with its ``hash`` added back."""
        document = orjson.loads(self.body)
        document["hash"] = self.hash
        return orjson.dumps(document)


@dataclass(frozen=True, slots=True)
class AppendPlan:
    joins: tuple[EventRow, ...]
    """Rows for ``events``, in the order to write them (each stream's in seq order):
    the batch's events that link, and the held ones they promote, which keep the
    ``received_at`` of their arrival (when the platform got the bytes)."""
    holds: tuple[EventRow, ...]
    """New rows for ``held_events``."""
    released: tuple[EventRow, ...]
    """Held rows to delete: promoted (in ``joins``) or refused (in ``rejected``)."""
    duplicates: int
    rejected: tuple[DeadLetter, ...]
    heads: tuple[StreamHead, ...]
    """The new head of each stream whose head the joins move."""

    def result(self) -> AppendResult:
        return AppendResult(
            len(self.joins), self.duplicates, self.rejected, len(self.holds), self.heads
        )


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


def custody_from(events: Iterable[SealedEvent]) -> dict[str, int]:
    """Per stream of the batch, the seq from which ``plan_append`` needs its held
    events: the batch's first (held events below it sit behind a hole this batch
    cannot fill)."""
    first: dict[str, int] = {}
    for event in events:
        first[event.stream_id] = min(event.seq, first.get(event.stream_id, event.seq))
    return first


def plan_append(
    events: Sequence[SealedEvent],
    stored: Mapping[StreamKey, StoredLink],
    *,
    received_at: datetime,
    heads: Mapping[str, StreamHead] | None = None,
    held: Iterable[EventRow] = (),
) -> AppendPlan:
    """Split ``events`` into joins, holds, duplicates and integrity rejections, and
    settle the ``held`` events the joins reach.

    ``stored`` holds the neighbours ``neighbour_ranges`` names and the stored successor
    of each held event; ``heads`` the stored head of each stream of the batch (absent:
    empty); ``held`` its held events from ``custody_from`` on.
    """
    batch: dict[str, list[EventRow]] = defaultdict(list)
    for event in events:
        batch[event.stream_id].append(EventRow.of(event, received_at))
    waiting: dict[str, list[EventRow]] = defaultdict(list)
    for row in held:
        waiting[row.stream_id].append(row)
    known = dict(stored)
    custody = _Custody(known)
    for stream_id in sorted(batch):
        head = (heads or {}).get(stream_id)
        custody.settle(stream_id, batch[stream_id], waiting[stream_id], head)
    return custody.plan()


@dataclass(slots=True)
class _Run:
    """A refused candidate and the candidates descending from it: one incident."""

    root: EventRow
    root_was_held: bool
    cause: str
    """Why the root was refused, as the dead letter of a lone arriving event says it."""
    members: list[EventRow] = field(default_factory=list)

    def detail(self) -> str:
        """One detail for every dead letter of the run; a lone arriving event keeps
        the conflict or chain break it is."""
        if len(self.members) == 1 and not self.root_was_held:
            return self.cause
        seqs = [member.seq for member in self.members]
        origin = "held" if self.root_was_held else "arriving"
        return (
            f"chain custody: seqs {min(seqs)}..{max(seqs)} of {self.root.stream_id} refused "
            f"as one run of {len(seqs)} events: {origin} seq {self.root.seq}: {self.cause}"
        )


@dataclass(slots=True)
class _Custody:
    """The planner's state across the streams of one append."""

    known: dict[StreamKey, StoredLink]
    joins: list[EventRow] = field(default_factory=list)
    holds: list[EventRow] = field(default_factory=list)
    released: list[EventRow] = field(default_factory=list)
    refused: list[tuple[EventRow, _Run]] = field(default_factory=list)
    duplicates: int = 0
    heads: list[StreamHead] = field(default_factory=list)

    def settle(
        self,
        stream_id: str,
        batch: list[EventRow],
        held: list[EventRow],
        head: StreamHead | None,
    ) -> None:
        # In seq order; for one seq, held candidates first (oldest first), then the
        # batch's in batch order (the sort is stable).
        candidates = [(True, row) for row in sorted(held, key=_arrival)]
        seen = {(row.seq, row.hash) for row in held}
        for row in batch:
            key = (row.seq, row.hash)
            if key in seen:
                self.duplicates += 1  # the platform has these bytes already (or twice here)
                continue
            seen.add(key)
            candidates.append((False, row))
        candidates.sort(key=_candidate_seq)
        runs: dict[tuple[int, str], _Run] = {}
        moved = head
        for was_held, row in candidates:
            joined = self._settle_one(row, was_held, runs)
            if joined and (moved is None or row.seq > moved.seq):
                moved = StreamHead(stream_id, row.seq, row.hash)
        if moved is not None and moved != head:
            self.heads.append(moved)

    def _settle_one(self, row: EventRow, was_held: bool, runs: dict[tuple[int, str], _Run]) -> bool:
        """Settle one candidate; say whether it joined the stream."""
        stored = self.known.get((row.stream_id, row.seq))
        if stored is not None and stored.hash == row.hash:
            if was_held:
                self.released.append(row)  # stored meanwhile; nothing left to hold
            else:
                self.duplicates += 1
            return False
        parent = runs.get((row.seq - 1, row.prev_hash)) if runs else None
        if parent is not None:
            self._refuse(row, parent, runs, was_held)
            return False
        problem = _link_problem(row, stored, self.known)
        if problem is None:
            self.known[(row.stream_id, row.seq)] = StoredLink(row.hash, row.prev_hash)
            self.joins.append(row)
            if was_held:
                self.released.append(row)
            return True
        if problem is _WAITING:
            if not was_held:
                self.holds.append(row)
            return False
        self._refuse(row, _Run(row, was_held, problem), runs, was_held)
        return False

    def _refuse(
        self, row: EventRow, run: _Run, runs: dict[tuple[int, str], _Run], was_held: bool
    ) -> None:
        run.members.append(row)
        runs[(row.seq, row.hash)] = run
        self.refused.append((row, run))
        if was_held:
            self.released.append(row)

    def plan(self) -> AppendPlan:
        rejected = tuple(_dead_letter(row, run.detail()) for row, run in self.refused)
        return AppendPlan(
            tuple(self.joins),
            tuple(self.holds),
            tuple(self.released),
            self.duplicates,
            rejected,
            tuple(self.heads),
        )


_WAITING = "waiting: the predecessor is not stored"


def _arrival(row: EventRow) -> tuple[int, datetime, str]:
    return row.seq, row.received_at, row.hash


def _candidate_seq(candidate: tuple[bool, EventRow]) -> int:
    return candidate[1].seq


def _link_problem(
    row: EventRow, stored: StoredLink | None, known: Mapping[StreamKey, StoredLink]
) -> str | None:
    """``None`` when ``row`` may join; ``_WAITING`` when it must be held; else why not."""
    if stored is not None:
        return (
            f"seq conflict: seq {row.seq} of {row.stream_id} is already stored "
            f"with hash {stored.hash}, this one has {row.hash}"
        )
    if row.seq == 1:
        if row.prev_hash != GENESIS_HASH:
            return "chain break: seq 1 must have a prev_hash of 64 zeros"
    else:
        predecessor = known.get((row.stream_id, row.seq - 1))
        if predecessor is None:
            return _WAITING
        if predecessor.hash != row.prev_hash:
            return f"chain break: prev_hash does not match the stored hash of seq {row.seq - 1}"
    # Only a stream stored before chain custody can have a stored successor here.
    successor = known.get((row.stream_id, row.seq + 1))
    if successor is not None and successor.prev_hash != row.hash:
        return f"chain break: stored seq {row.seq + 1} does not point at this event's hash"
    return None


def _dead_letter(row: EventRow, problem: str) -> DeadLetter:
    rejection = Rejection(
        RejectionReason.INTEGRITY, problem, row.wire_json(), row.device_id, row.seq
    )
    return DeadLetter(topic=source_topic(row.stream_id, row.device_id), rejection=rejection)


def seals_to_store(
    seals: Iterable[StreamSeal],
    stored: Mapping[StreamKey, StoredLink],
    plan: AppendPlan,
    held: Iterable[EventRow] = (),
) -> list[StreamSeal]:
    """The seals an append stores: each whose event the stream holds after the plan
    (stored before, joined now, or held) with the very hash it signs.  A seal over
    an event refused as a conflict or chain break would seal what the store does
    not hold, so it goes with its event.  ``stored`` and ``held`` are what
    ``plan_append`` was given; the adapters skip a seal already stored for the seq."""
    refused = {(row.stream_id, row.seq, row.hash) for row in plan.released} - {
        (row.stream_id, row.seq, row.hash) for row in plan.joins
    }
    holding = {(row.stream_id, row.seq, row.hash) for row in (*held, *plan.holds, *plan.joins)}
    kept: dict[StreamKey, StreamSeal] = {}
    for seal in seals:
        key = (seal.stream_id, seal.seq, seal.hash)
        link = stored.get((seal.stream_id, seal.seq))
        if (link is not None and link.hash == seal.hash) or (key in holding and key not in refused):
            kept.setdefault((seal.stream_id, seal.seq), seal)
    return list(kept.values())


def source_topic(stream_id: str, device_id: str) -> str:
    """The topic an event of this stream arrives on (platform streams have none)."""
    if is_device_stream(stream_id):
        return device_topic(device_id, DeviceChannel.EVENTS)
    return f"platform/{stream_id}"
