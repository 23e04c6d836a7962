"""The event store's ports: what every adapter (in memory, SQLite, PostgreSQL) promises.

Contract (DESIGN §5), proven for every adapter by ``tests/contract``:

* append-only; the key of an event is ``(stream_id, seq)``;
* appending an event already stored with the same hash is a no-op, counted as a
  duplicate; the same key with another hash is a conflict: the first stays, the
  newcomer is dead-lettered (``integrity``) in the same transaction;
* an event whose ``prev_hash`` does not match its stored predecessor (or whose hash
  its stored successor does not point at) is likewise dead-lettered, so stored
  chains only ever break through tampering, never through ingest;
* chain custody (DESIGN §4.2): an event joins its stream only when it links to its
  stored predecessor (seq 1: to the zero hash).  One that arrives past a hole is
  *held*, durably and raw, outside the stream and the global order, until an append
  stores its predecessor: in that same transaction it is promoted if it links, and
  refused otherwise, with every held event descending from it, as one integrity
  incident (dead letters whose detail starts ``chain custody:``);
* ``read(after)`` returns events in an order where nothing can later appear
  before a position already returned, however writers interleave their commits;
* seals (DESIGN §4.1) are stored append-only beside the events, in the append's
  transaction, each only when its stream holds (stored or held) the event it signs
  with the hash it signs; a seal already stored for that seq is kept (resends);
* a device's presence only ever moves forward in time: a status stamped before
  the stored one is ignored, whatever order the two arrive in.
"""

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar, NamedTuple, Protocol, Self
from uuid import UUID

from schemas import Heartbeat, Rejection, SealedEvent, unseal


@dataclass(frozen=True, slots=True, order=True)
class Cursor:
    """A place in the store's global order.

    ``commit`` orders writers' transactions (the PostgreSQL transaction id; 0 on
    SQLite, where writers are serialized); ``position`` orders events within it.
    """

    commit: int
    position: int

    START: ClassVar["Cursor"]


Cursor.START = Cursor(0, 0)


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """An event as the store holds it: the hashed bytes plus where and when it landed."""

    cursor: Cursor
    stream_id: str
    device_id: str
    seq: int
    event_id: UUID
    type: str
    occurred_at: datetime
    received_at: datetime
    """When the platform received the bytes: for an event that waited as held, when
    it arrived, not when the hole before it filled."""
    hash: str
    prev_hash: str
    body: bytes

    def sealed(self) -> SealedEvent:
        return unseal(self.body, self.hash, self.stream_id)


class EventRecord(NamedTuple):
    """The part of a stored event that folds read, fetched in bulk by replays: no
    event id, no device-clock time, no ``prev_hash`` column (the body has them)."""

    cursor: Cursor
    stream_id: str
    device_id: str
    seq: int
    type: str
    received_at: datetime
    hash: str
    body: bytes


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """Input refused at the door, with the topic it came on."""

    topic: str
    rejection: Rejection


@dataclass(frozen=True, slots=True)
class StoredDeadLetter:
    id: int
    received_at: datetime
    topic: str
    reason: str
    detail: str
    device_id: str | None
    seq: int | None
    raw: bytes
    raw_size: int
    """Size of the refused input; ``raw`` keeps at most ``DEAD_LETTER_RAW_LIMIT`` of it."""


DEAD_LETTER_RAW_LIMIT = 256 * 1024


@dataclass(frozen=True, slots=True)
class Presence:
    """A device's last known MQTT status (DESIGN §4), as of ``changed_at``."""

    online: bool
    changed_at: datetime


@dataclass(frozen=True, slots=True)
class Gap:
    """Seqs ``from_seq``..``to_seq`` (inclusive) of a stream are missing: exactly the
    range a ``resend`` command asks the device for."""

    stream_id: str
    from_seq: int
    to_seq: int


@dataclass(frozen=True, slots=True)
class StreamHead:
    """The newest event of a stream's stored chain: its seq and its hash."""

    stream_id: str
    seq: int
    hash: str


@dataclass(frozen=True, slots=True)
class AppendResult:
    appended: int
    """Events that joined their stream: the batch's own, and held ones it promoted."""
    duplicates: int
    """Events of the batch already stored (or already held) with the same hash."""
    rejected: tuple[DeadLetter, ...]
    """Conflicts, chain breaks and refused held runs (already dead-lettered)."""
    held: int
    """Events of the batch newly held: they arrived past a hole (see the module doc)."""
    heads: tuple[StreamHead, ...]
    """The new stored head of every stream whose head this append moved, as committed."""

    @classmethod
    def empty(cls) -> Self:
        return cls(0, 0, (), 0, ())


@dataclass(frozen=True, slots=True)
class StreamSeal:
    """A verified seal to store: ``sig`` signs the hash ``hash`` of event ``seq`` of
    ``stream_id`` under key ``key_id`` (the hash is checked by the append, not kept)."""

    stream_id: str
    seq: int
    hash: str
    key_id: str
    sig: str


@dataclass(frozen=True, slots=True)
class StoredSeal:
    stream_id: str
    seq: int
    key_id: str
    sig: str
    stored_at: datetime


NextEvent = Callable[[StoredEvent | None], SealedEvent | Sequence[SealedEvent] | None]
"""Builds a stream's next event, or next events, from its newest stored one (see
``append_next``)."""


def matching_read(
    rows: list[StoredEvent], after: Cursor, stream_prefix: str, types: Collection[str] | None
) -> tuple[list[StoredEvent], Cursor]:
    """``read_matching``'s answer from the rows an adapter read: the events that match
    and the last row looked at, which may not."""
    through = rows[-1].cursor if rows else after
    matching = [
        row
        for row in rows
        if row.stream_id.startswith(stream_prefix) and (types is None or row.type in types)
    ]
    return matching, through


def stream_family(stream_id: str) -> str:
    """What an append's wake-up names of ``stream_id``: its kind, up to and including
    the first colon (``alert:``, ``config:``), or nothing for a device's own stream."""
    kind, colon, _ = stream_id.partition(":")
    return f"{kind}{colon}" if colon else ""


def wakes(family: str, stream_prefix: str) -> bool:
    """Whether an append to streams of ``family`` may concern a reader of the streams
    under ``stream_prefix`` (every append concerns a reader of all streams)."""
    if not stream_prefix:
        return True
    return bool(family) and (stream_prefix.startswith(family) or family.startswith(stream_prefix))


def next_events(built: SealedEvent | Sequence[SealedEvent] | None) -> list[SealedEvent]:
    """What a ``NextEvent`` built, as a list (empty: nothing to append)."""
    if built is None:
        return []
    return [built] if isinstance(built, SealedEvent) else list(built)


class EventLog(Protocol):
    """The events themselves: append (deduplicated, chain-checked), read in global
    order or by stream, and wait for more.  What the gateway writes and projectors,
    the notifier and the audit read."""

    def append(
        self,
        events: Sequence[SealedEvent],
        dead_letters: Sequence[DeadLetter] = (),
        *,
        received_at: datetime | None = None,
        seals: Sequence[StreamSeal] = (),
    ) -> AppendResult:
        """Store ``events``, ``dead_letters`` and the ``seals`` over them in one
        transaction (see the module doc)."""
        ...

    def append_next(
        self, stream_id: str, build: "NextEvent", *, received_at: datetime | None = None
    ) -> SealedEvent | None:
        """Append the event ``build`` makes from the stream's newest stored event
        (``None`` for an empty stream), with no other writer of the stream in between;
        ``build`` returns ``None`` when nothing is to be appended.  It may return
        several events, which then land together or not at all (an enrolment is
        three facts of one moment); the last one is returned.

        For platform streams with several writers (an alert is resolved by the engine
        and acknowledged through the API): reading the head and appending in two steps
        would let both writers take the same seq, and the loser would be a conflict.
        """
        ...

    def append_with_next(
        self,
        events: Sequence[SealedEvent],
        nexts: Sequence[tuple[str, "NextEvent"]],
        *,
        received_at: datetime | None = None,
    ) -> tuple[AppendResult, list[SealedEvent | None]]:
        """``append(events)`` and then, for each ``(stream_id, build)`` in order,
        ``append_next(stream_id, build)``, all in one transaction: the events and
        every built one land together or none of them does.  A builder sees what the
        call appended before it (a stream named twice, the second builder sees the
        first one's event).  Returns the events' result and, for each builder, the
        last event it built (``None``: it declined).

        A projector step's alert events (those raised, escalated and resolved) take
        one commit instead of one each: the step's latency is mostly such waits."""
        ...

    def read(self, after: Cursor, limit: int = 1000) -> list[StoredEvent]:
        """Events after ``after`` in global order, at most ``limit``."""
        ...

    def read_records(self, after: Cursor, limit: int = 10_000) -> list[EventRecord]:
        """``read``, but only what folds need: a replay's bulk read."""
        ...

    def read_matching(
        self,
        after: Cursor,
        limit: int = 1000,
        *,
        stream_prefix: str = "",
        types: Collection[str] | None = None,
    ) -> tuple[list[StoredEvent], Cursor]:
        """Of the next ``limit`` events after ``after`` (``read``'s), those whose stream
        id starts with ``stream_prefix`` and whose type is one of ``types`` (any type:
        ``None``), and the cursor of the last one looked at (``after`` when there was
        none): a follower of a few streams or types moves its checkpoint there without
        the other events' bodies leaving the database."""
        ...

    def read_stream(
        self, stream_id: str, from_seq: int = 1, to_seq: int | None = None, limit: int | None = None
    ) -> list[StoredEvent]:
        """One stream's events with ``from_seq <= seq <= to_seq``, in seq order."""
        ...

    def head(self, stream_id: str) -> StreamHead | None:
        """The stream's highest stored seq and its hash (``None``: nothing stored).
        Held events are not stored: a stream's head never counts them."""
        ...

    def count_events(self) -> int:
        """How many events are stored (for progress reporting); held ones are not."""
        ...

    def stream_ids(self) -> list[str]:
        """The name of every stream holding at least one event, each once, in name
        order (the database's)."""
        ...

    def wait_for_appends(self, timeout: float, *, stream_prefix: str = "") -> None:
        """Return when events may have been appended by anyone since the last call
        (or the last read) to a stream whose id starts with ``stream_prefix``, or after
        ``timeout`` seconds: how a projector waits without polling hard.  The store may
        return for other streams' appends too (``wakes``).  PostgreSQL: LISTEN/NOTIFY,
        each append naming its streams' families; SQLite: the file's data version, any
        append."""
        ...


class DeadLetters(Protocol):
    """Input refused at the door or by the append's integrity checks, kept with its
    reason and (a bounded prefix of) its bytes; written only through ``append``."""

    def dead_letters(self, after_id: int = 0, limit: int = 100) -> list[StoredDeadLetter]:
        """Dead letters with an id above ``after_id``, in id (arrival) order."""
        ...


class Seals(Protocol):
    """Device seals, written only through ``append``."""

    def read_seals(self, stream_id: str, from_seq: int = 1, limit: int = 0) -> list[StoredSeal]:
        """The stream's stored seals with ``seq >= from_seq``, in seq order, at most
        ``limit`` of them (0: all)."""
        ...


class Telemetry(Protocol):
    """What devices report besides events: heartbeat samples and MQTT presence.
    Neither is hashed nor chained; losing a sample is harmless (QoS 0)."""

    def record_heartbeats(
        self, heartbeats: Sequence[Heartbeat], *, received_at: datetime | None = None
    ) -> None: ...

    def latest_heartbeats(self, device_id: str, limit: int = 100) -> list[Heartbeat]:
        """A device's most recent telemetry samples, newest first."""
        ...

    def newest_heartbeats(self, device_ids: Sequence[str]) -> dict[str, Heartbeat]:
        """Each device's newest telemetry sample, in one read however many devices
        (what ``latest_heartbeats(device_id, 1)`` answers for each); devices never
        heard are absent."""
        ...

    def record_presence(self, device_id: str, online: bool, at: datetime) -> None:
        """Store a device's status as of ``at`` (timezone-aware) unless a newer one is stored.

        Retained status messages are redelivered on every gateway reconnect and two
        gateways may race, so a late, stale ``offline`` must not hide a fresher ``online``.
        """
        ...

    def presence(self, device_ids: Sequence[str] | None = None) -> dict[str, Presence]:
        """The stored presence of ``device_ids`` (of every device when ``None``);
        devices never seen are simply absent."""
        ...


class StreamGaps(Protocol):
    """Which seqs of a stream are missing: what the gateway asks devices to resend."""

    def find_gaps(self, stream_id: str, after_seq: int = 0) -> list[Gap]:
        """The missing seq ranges above ``after_seq``, in order: the holes between the
        seqs the platform has, stored or held (held events sit past a hole, which the
        device must fill before they can join the stream).

        Only the seqs above ``after_seq`` are looked at, so a caller that knows the
        stream is whole up to ``after_seq`` pays for the recent tail, not the whole
        history.  Seqs after the last stored or held one are not a gap: nobody can
        know yet whether they were ever sent.
        """
        ...

    def contiguous_through(self, stream_id: str, after_seq: int = 0) -> int:
        """The highest ``S`` with every seq in ``after_seq + 1``..``S`` stored (held
        events never count).

        ``after_seq`` is taken as already known whole (``0``: the stream's start);
        the answer is ``after_seq`` itself when ``after_seq + 1`` is missing.
        """
        ...


class EventStore(EventLog, DeadLetters, Seals, Telemetry, StreamGaps, Protocol):
    """Every part of the store behind one open handle, which ``close`` releases.

    One instance is used by one thread at a time; open one per worker.  Failures
    are the store's own (``StoreUnavailableError``: wait and retry;
    ``StoreRefusedValueError``: the input will never be taken), never a driver's.
    Checkpoints are not here: they move in the same transaction as the read models
    they describe (``services.eventstore.checkpoints``).
    """

    def close(self) -> None: ...
