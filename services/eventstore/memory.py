"""In-memory adapter: the whole port in plain Python, for unit tests of what sits on
the store (the gateway's ingest core, the API's commands) without a database.

Every call holds one lock, so writers are serialized as on SQLite: positions are
handed out in commit order and ``Cursor.commit`` is always 0.  Nothing survives the
process; ``tests/contract`` holds it to everything the database adapters promise.
"""

import threading
from bisect import bisect_left, bisect_right, insort
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

from schemas import Heartbeat, SealedEvent
from services.eventstore.append_plan import (
    EventRow,
    StoredLink,
    StreamKey,
    custody_from,
    neighbour_ranges,
    plan_append,
    seals_to_store,
)
from services.eventstore.ports import (
    DEAD_LETTER_RAW_LIMIT,
    AppendResult,
    Cursor,
    DeadLetter,
    EventRecord,
    Gap,
    NextEvent,
    Presence,
    StoredDeadLetter,
    StoredEvent,
    StoredSeal,
    StreamHead,
    StreamSeal,
    matching_read,
    next_events,
)

_NO_LIMIT: Final = 2**62


def _seq_of(event: StoredEvent) -> int:
    return event.seq


@dataclass(slots=True)
class _Stream:
    """One stream's events in seq order (appends may fill holes anywhere)."""

    events: list[StoredEvent] = field(default_factory=list)

    def between(self, first: int, last: int) -> list[StoredEvent]:
        start = bisect_left(self.events, first, key=_seq_of)
        return self.events[start : bisect_right(self.events, last, key=_seq_of)]

    def above(self, after_seq: int) -> Iterator[int]:
        start = bisect_right(self.events, after_seq, key=_seq_of)
        return (event.seq for event in self.events[start:])


@dataclass(slots=True)
class _Saved:
    """The store as it was before a call that must land whole or not at all."""

    events: int
    streams: dict[str, list[StoredEvent]]
    held: dict[str, dict[tuple[int, str], EventRow]]
    dead_letters: int
    appends: int


class InMemoryEventStore:
    """The event store in dicts and lists, safe to share between threads."""

    def __init__(self) -> None:
        # Reentrant: ``append_next`` runs its builder under the lock, and a builder may
        # read the store as it may inside the SQL adapters' write transaction.
        self._lock = threading.RLock()
        self._appended = threading.Condition(self._lock)
        self._events: list[StoredEvent] = []
        """Global order: the event at index ``i`` has position ``i + 1``."""
        self._streams: dict[str, _Stream] = {}
        self._held: dict[str, dict[tuple[int, str], EventRow]] = {}
        """Per stream, the events held past a hole, by (seq, hash): outside the stream."""
        self._seals: dict[str, dict[int, StoredSeal]] = {}
        self._dead_letters: list[StoredDeadLetter] = []
        """The letter at index ``i`` has id ``i + 1``."""
        self._heartbeats: dict[str, list[Heartbeat]] = {}
        self._presence: dict[str, Presence] = {}
        self._appends = 0
        self._appends_seen = 0

    def append(
        self,
        events: Sequence[SealedEvent],
        dead_letters: Sequence[DeadLetter] = (),
        *,
        received_at: datetime | None = None,
        seals: Sequence[StreamSeal] = (),
    ) -> AppendResult:
        if not events and not dead_letters:
            return AppendResult.empty()
        received = _utc(received_at or datetime.now(UTC))
        with self._lock:
            return self._append_in(events, dead_letters, received, seals)

    def append_next(
        self, stream_id: str, build: NextEvent, *, received_at: datetime | None = None
    ) -> SealedEvent | None:
        received = _utc(received_at or datetime.now(UTC))
        with self._lock:
            return self._append_next_in(stream_id, build, received)

    def append_with_next(
        self,
        events: Sequence[SealedEvent],
        nexts: Sequence[tuple[str, NextEvent]],
        *,
        received_at: datetime | None = None,
    ) -> tuple[AppendResult, list[SealedEvent | None]]:
        received = _utc(received_at or datetime.now(UTC))
        with self._lock:
            # All or nothing, as one transaction is elsewhere: a builder that raises
            # leaves the streams as they were before the call.
            saved = self._saved()
            try:
                result = self._append_in(events, (), received) if events else AppendResult.empty()
                built = [self._append_next_in(stream_id, build, received)
                         for stream_id, build in nexts]  # fmt: skip
            except BaseException:
                self._restore(saved)
                raise
            return result, built

    def _saved(self) -> _Saved:
        return _Saved(
            len(self._events),
            {stream_id: list(stream.events) for stream_id, stream in self._streams.items()},
            {stream_id: dict(rows) for stream_id, rows in self._held.items()},
            len(self._dead_letters),
            self._appends,
        )

    def _restore(self, saved: _Saved) -> None:
        """Back to ``saved``: what appends without seals change, undone."""
        del self._events[saved.events :]
        self._streams = {stream_id: _Stream(events) for stream_id, events in saved.streams.items()}
        self._held = saved.held
        del self._dead_letters[saved.dead_letters :]
        self._appends = saved.appends

    def _append_next_in(
        self, stream_id: str, build: NextEvent, received: datetime
    ) -> SealedEvent | None:
        stream = self._streams.get(stream_id)
        events = next_events(build(stream.events[-1] if stream and stream.events else None))
        if events:
            self._append_in(events, (), received)
        return events[-1] if events else None

    def _append_in(
        self,
        events: Sequence[SealedEvent],
        dead_letters: Sequence[DeadLetter],
        received: datetime,
        seals: Sequence[StreamSeal] = (),
    ) -> AppendResult:
        held = self._held_from(events)
        neighbours = self._stored_neighbours(events, held)
        plan = plan_append(
            events, neighbours, received_at=received, heads=self._heads(events), held=held
        )
        kept = seals_to_store(seals, neighbours, plan, held)
        # Every row is built before any is kept: all of the append lands, or none of it.
        first_position, first_id = len(self._events) + 1, len(self._dead_letters) + 1
        stored = [
            _stored_event(row, Cursor(0, position))
            for position, row in enumerate(plan.joins, start=first_position)
        ]
        letters = [
            _stored_letter(letter, letter_id, received)
            for letter_id, letter in enumerate((*dead_letters, *plan.rejected), start=first_id)
        ]
        self._events.extend(stored)
        self._dead_letters.extend(letters)
        for event in stored:
            insort(self._streams.setdefault(event.stream_id, _Stream()).events, event, key=_seq_of)
        for row in plan.released:
            del self._held[row.stream_id][(row.seq, row.hash)]
        for row in plan.holds:
            self._held.setdefault(row.stream_id, {})[(row.seq, row.hash)] = row
        for seal in kept:
            self._seals.setdefault(seal.stream_id, {}).setdefault(
                seal.seq, StoredSeal(seal.stream_id, seal.seq, seal.key_id, seal.sig, received)
            )
        if stored:
            self._appends += 1
            self._appended.notify_all()
        return plan.result()

    def _stored_neighbours(
        self, events: Sequence[SealedEvent], held: Sequence[EventRow]
    ) -> dict[StreamKey, StoredLink]:
        stored: dict[StreamKey, StoredLink] = {}
        wanted = [(r.stream_id, r.first, r.last) for r in neighbour_ranges(events)]
        # The stored successor of each held event, which a promotion must also match.
        wanted.extend((row.stream_id, row.seq + 1, row.seq + 1) for row in held)
        for stream_id, first, last in wanted:
            stream = self._streams.get(stream_id, _Stream())
            for event in stream.between(first, last):
                stored[(event.stream_id, event.seq)] = StoredLink(event.hash, event.prev_hash)
        return stored

    def _heads(self, events: Sequence[SealedEvent]) -> dict[str, StreamHead]:
        heads: dict[str, StreamHead] = {}
        for stream_id in {event.stream_id for event in events}:
            head = self._head(stream_id)
            if head is not None:
                heads[stream_id] = head
        return heads

    def _held_from(self, events: Sequence[SealedEvent]) -> list[EventRow]:
        return [
            row
            for stream_id, first in custody_from(events).items()
            for (seq, _), row in self._held.get(stream_id, {}).items()
            if seq >= first
        ]

    def _head(self, stream_id: str) -> StreamHead | None:
        stream = self._streams.get(stream_id)
        if stream is None or not stream.events:
            return None
        newest = stream.events[-1]
        return StreamHead(stream_id, newest.seq, newest.hash)

    def head(self, stream_id: str) -> StreamHead | None:
        with self._lock:
            return self._head(stream_id)

    def read(self, after: Cursor, limit: int = 1000) -> list[StoredEvent]:
        start = max(after.position, 0)
        with self._lock:
            return self._events[start : start + limit]

    def read_matching(
        self,
        after: Cursor,
        limit: int = 1000,
        *,
        stream_prefix: str = "",
        types: Collection[str] | None = None,
    ) -> tuple[list[StoredEvent], Cursor]:
        return matching_read(self.read(after, limit), after, stream_prefix, types)

    def read_records(self, after: Cursor, limit: int = 10_000) -> list[EventRecord]:
        return [
            EventRecord(e.cursor, e.stream_id, e.device_id, e.seq, e.type, e.received_at, e.hash,
                        e.body)
            for e in self.read(after, limit)
        ]  # fmt: skip

    def read_stream(
        self, stream_id: str, from_seq: int = 1, to_seq: int | None = None, limit: int | None = None
    ) -> list[StoredEvent]:
        with self._lock:
            stream = self._streams.get(stream_id, _Stream())
            events = stream.between(from_seq, _NO_LIMIT if to_seq is None else to_seq)
        # A limit of 0 means none, as the SQL adapters read it.
        return events[:limit] if limit else events

    def read_seals(self, stream_id: str, from_seq: int = 1, limit: int = 0) -> list[StoredSeal]:
        with self._lock:
            by_seq = self._seals.get(stream_id, {})
            found = [by_seq[seq] for seq in sorted(by_seq) if seq >= from_seq]
        return found[:limit] if limit else found

    def count_events(self) -> int:
        with self._lock:
            return len(self._events)

    def stream_ids(self) -> list[str]:
        with self._lock:
            return sorted(self._streams)

    def wait_for_appends(self, timeout: float, *, stream_prefix: str = "") -> None:
        with self._lock:
            self._appended.wait_for(lambda: self._appends != self._appends_seen, timeout)
            self._appends_seen = self._appends

    def dead_letters(self, after_id: int = 0, limit: int = 100) -> list[StoredDeadLetter]:
        start = max(after_id, 0)
        with self._lock:
            return self._dead_letters[start : start + limit]

    def record_heartbeats(
        self, heartbeats: Sequence[Heartbeat], *, received_at: datetime | None = None
    ) -> None:
        with self._lock:
            for beat in heartbeats:
                self._heartbeats.setdefault(beat.device_id, []).append(beat)

    def latest_heartbeats(self, device_id: str, limit: int = 100) -> list[Heartbeat]:
        with self._lock:
            beats = list(self._heartbeats.get(device_id, ()))
        beats.sort(key=lambda beat: beat.sampled_at, reverse=True)
        return beats[:limit]

    def newest_heartbeats(self, device_ids: Sequence[str]) -> dict[str, Heartbeat]:
        with self._lock:
            return {
                device_id: max(beats, key=lambda beat: beat.sampled_at)
                for device_id in device_ids
                if (beats := self._heartbeats.get(device_id))
            }

    def record_presence(self, device_id: str, online: bool, at: datetime) -> None:
        changed_at = _utc(at)
        with self._lock:
            stored = self._presence.get(device_id)
            # Same instant replaces, as the SQL adapters' ``>=`` guard does.
            if stored is None or changed_at >= stored.changed_at:
                self._presence[device_id] = Presence(online, changed_at)

    def presence(self, device_ids: Sequence[str] | None = None) -> dict[str, Presence]:
        with self._lock:
            wanted = self._presence.keys() if device_ids is None else set(device_ids)
            return {
                device_id: self._presence[device_id]
                for device_id in sorted(wanted)
                if device_id in self._presence
            }

    def find_gaps(self, stream_id: str, after_seq: int = 0) -> list[Gap]:
        gaps: list[Gap] = []
        previous = after_seq
        with self._lock:  # stored and held seqs as of one moment
            known = {seq for seq, _ in self._held.get(stream_id, {}) if seq > after_seq}
            known.update(self._seqs_above(stream_id, after_seq))
        for seq in sorted(known):
            if seq > previous + 1:
                gaps.append(Gap(stream_id, previous + 1, seq - 1))
            previous = seq
        return gaps

    def contiguous_through(self, stream_id: str, after_seq: int = 0) -> int:
        through = after_seq
        for seq in self._seqs_above(stream_id, after_seq):
            if seq > through + 1:
                break
            through = seq
        return through

    def _seqs_above(self, stream_id: str, after_seq: int) -> list[int]:
        with self._lock:
            return list(self._streams.get(stream_id, _Stream()).above(after_seq))

    def close(self) -> None:
        """Release nothing: the data lives as long as this object, and a closed store
        stays usable, as a database adapter opened again on the same database would be
        (so a caller that drops and reopens its store can be handed this one again)."""


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC)


def _stored_event(row: EventRow, cursor: Cursor) -> StoredEvent:
    return StoredEvent(
        cursor=cursor,
        stream_id=row.stream_id,
        device_id=row.device_id,
        seq=row.seq,
        event_id=row.event_id,
        type=row.type,
        occurred_at=_utc(row.occurred_at),
        received_at=row.received_at,
        hash=row.hash,
        prev_hash=row.prev_hash,
        body=row.body,
    )


def _stored_letter(letter: DeadLetter, letter_id: int, received: datetime) -> StoredDeadLetter:
    rejection = letter.rejection
    return StoredDeadLetter(
        id=letter_id,
        received_at=received,
        topic=letter.topic,
        reason=rejection.reason.value,
        detail=rejection.detail,
        device_id=rejection.device_id,
        seq=rejection.seq,
        raw=rejection.raw[:DEAD_LETTER_RAW_LIMIT],
        raw_size=len(rejection.raw),
    )
