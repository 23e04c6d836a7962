"""The agent's durable outbox (SQLite, WAL).

An event gets its ``seq``, ``prev_hash`` and ``hash`` in the same transaction that
stores it and moves the device's chain head, so whatever instant power fails or the
process is killed, the file holds a chain that is whole up to its head: an event
either exists with its place in the chain or never existed.

Delivery is end to end (DESIGN §4.2): the broker's PUBACK marks an event *sent*
(the device's *sent watermark*, one number, moves over the acknowledged batch),
but only a platform ack whose hash matches the device's own chain moves the
device's *acknowledged watermark*.  An event is kept until it is acknowledged and
its resend window (counted from when it was sent) has passed.  Over the disk budget,
acknowledged events go first whatever their age; unacknowledged ones never go:
when only they are left and the budget is still exceeded, the outbox records one
``E-OUTBOX-FULL`` fault event per episode (so the fleet team sees it), and a
``fault.cleared`` once it is no longer so.  Both the watermark and the episode are
in the file, so a restart neither loses nor repeats them.

The events this process recorded and the broker has not yet taken are also kept in
memory (a bounded *tail*, filled only once their transaction has committed), so the
link publishes them without reading them back; a backlog older than the tail, or
one recorded before a restart, is read from the file, its next batches ahead of the
link in a reader thread.  The file stays the truth: losing the tail, or what was
read ahead, costs a read, never an event.
"""

import sqlite3
import threading
import time
import uuid
from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from itertools import accumulate
from pathlib import Path
from typing import Final, TypeVar

from edge_agent.chain_store import (
    ChainWriter,
    InvalidReadingError,
    advance,
    anchor_at_genesis,
    delivery_state,
    mark_sent_through,
    own_hash,
    wire_bytes,
)
from edge_agent.custody import AckVerdict, DeliveryState, judge_ack
from edge_agent.device import DeviceReading
from edge_agent.outbox_schema import prepare
from schemas import SealedEvent, utc_text

__all__ = [
    "OUTBOX_FULL_FAULT",
    "AckOutcome",
    "Durability",
    "InvalidReadingError",
    "Outbox",
    "OutboxBatch",
    "OutboxEntry",
    "OutboxStats",
    "wire_bytes",
]

OUTBOX_FULL_FAULT: Final = "E-OUTBOX-FULL"
_T = TypeVar("_T")
_PRUNE_CHUNK: Final = 200
_TAIL_BYTES: Final = 4 * 1024 * 1024
"""Wire bytes the tails of all devices keep in memory: a few seconds of a flat-out
backlog, hours of a real handpiece, and well inside the agent's memory budget."""
_CHECKPOINT_BYTES: Final = 4 * 1024 * 1024
_CHECKPOINT_COMMITS: Final = 500
"""The WAL is copied back into the file after this many recorded bytes or commits,
whichever comes first (SQLite's own default is every 1,000 pages)."""
_READ_AHEAD_BYTES: Final = 1024 * 1024
"""Wire bytes of a backlog read ahead of the link, on a second connection in a
reader thread, while the link publishes what was read before: a few batches, so
the next one is ready when a PUBACK frees a slot, and a small part of the agent's
memory budget."""


class Durability(StrEnum):
    FULL = "full"
    """fsync at every commit: a reported event survives power loss."""
    NORMAL = "normal"
    """WAL default: survives a crashed process; power loss may undo the last commits
    (the chain stays whole, it just ends earlier)."""


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    device_id: str
    seq: int
    wire: bytes
    """The event exactly as it goes on the wire, identical on every resend."""


@dataclass(frozen=True, slots=True)
class OutboxBatch:
    """Consecutive stored events of one device, as the link publishes them."""

    first_seq: int
    last_seq: int
    wires: list[bytes]
    size: int
    """Wire bytes plus one separator an event: what the batch adds to a payload."""


class _Tail:
    """One device's recently recorded events, consecutive from ``first_seq``."""

    __slots__ = ("first_seq", "size", "wires")

    def __init__(self, first_seq: int) -> None:
        self.first_seq = first_seq
        self.wires: list[bytes] = []
        self.size = 0

    @property
    def end_seq(self) -> int:
        """The seq after the last one kept."""
        return self.first_seq + len(self.wires)

    def drop_through(self, seq: int) -> int:
        """Forget events up to ``seq``; the bytes freed."""
        count = min(max(seq - self.first_seq + 1, 0), len(self.wires))
        freed = sum(map(len, self.wires[:count]))
        del self.wires[:count]
        self.first_seq += count
        self.size -= freed
        return freed


class _ReadAhead:
    """A backlog read from the file ahead of the link: on a connection of its own,
    in a reader thread, so reading the next batches overlaps the link's wait for
    PUBACKs (SQLite steps through the file without holding the GIL) the way raw
    paho's network thread overlaps its socket work.

    One read is under way at most per device, and what was read is kept as a
    consecutive span from the link's cursor; both are dropped as soon as they may
    not be what the link needs next (a re-based chain, a cursor moved elsewhere).
    The stored bytes of a seq never change otherwise, so a span that holds the
    cursor is always the file's truth."""

    def __init__(self, path: Path, limit_bytes: int) -> None:
        self._path = path
        self.limit_bytes = limit_bytes
        self.spans: dict[str, _Tail] = {}
        self.size = 0
        """Wire bytes held by all spans."""
        self._pending: dict[str, tuple[int, Future[list[tuple[int, bytes]]]]] = {}
        """Per device: the seq the read starts after, and the read.  A read that is
        dropped from here is never used, wherever it had got to."""
        self._local = threading.local()
        self._executor: ThreadPoolExecutor | None = None

    def span_at(self, device_id: str, after_seq: int) -> _Tail | None:
        """The device's span, trimmed to start after ``after_seq``; None (and the
        span dropped) when it does not hold the event after it."""
        span = self.spans.get(device_id)
        pending = self._pending.get(device_id)
        # A read that is done joins the span at once, so the next can begin; one
        # under way is waited for only when the span ends before the cursor.
        if pending is not None and (
            pending[1].done() or span is None or span.end_seq <= after_seq + 1
        ):
            self.extend(device_id)
            span = self.spans.get(device_id)
        if span is None or not span.first_seq <= after_seq + 1 < span.end_seq:
            self.drop(device_id, keep_read_after=after_seq)
            return None
        self.size -= span.drop_through(after_seq)
        return span

    def begin(self, device_id: str, rows: list[tuple[int, bytes]]) -> _Tail:
        self.drop(device_id)
        span = self.spans[device_id] = _Tail(rows[0][0])
        self.append(span, rows)
        return span

    def extend(self, device_id: str) -> bool:
        """Wait for the read under way that continues the device's span (or that
        starts one), and add it; whether anything was added."""
        pending = self._pending.pop(device_id, None)
        if pending is None:
            return False
        after_seq, read = pending
        rows = read.result()
        span = self.spans.get(device_id)
        if not rows:
            return False
        if span is None:
            span = self.spans[device_id] = _Tail(after_seq + 1)
        if span.end_seq != after_seq + 1 or rows[0][0] != span.end_seq:
            return False  # the span moved meanwhile: not consecutive with it
        self.append(span, rows)
        return True

    def read_after(self, device_id: str, after_seq: int, rows: int) -> None:
        """Start reading up to ``rows`` events after ``after_seq`` in the reader
        thread, unless one is under way or the spans hold their limit already."""
        if device_id in self._pending or self.size >= self.limit_bytes:
            return
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="outbox-read-ahead")
        read = self._executor.submit(self._read, device_id, after_seq, rows)
        self._pending[device_id] = (after_seq, read)

    def reading(self, device_id: str) -> bool:
        return device_id in self._pending

    def drop(self, device_id: str, *, keep_read_after: int | None = None) -> None:
        span = self.spans.pop(device_id, None)
        if span is not None:
            self.size -= span.size
        pending = self._pending.get(device_id)
        if pending is not None and pending[0] != keep_read_after:
            del self._pending[device_id]
            pending[1].cancel()

    def trim(self, device_id: str, through: int) -> None:
        span = self.spans.get(device_id)
        if span is not None:
            self.size -= span.drop_through(through)

    def close(self) -> None:
        self._pending.clear()
        self.spans.clear()
        self.size = 0
        if self._executor is not None:
            self._executor.submit(self._close_connection)
            self._executor.shutdown(wait=True, cancel_futures=False)
            self._executor = None

    def append(self, span: _Tail, rows: list[tuple[int, bytes]]) -> None:
        for _, wire in rows:
            span.wires.append(wire)
            span.size += len(wire)
            self.size += len(wire)

    def _read(self, device_id: str, after_seq: int, limit: int) -> list[tuple[int, bytes]]:
        """In the reader thread, on its own connection (a connection serves one thread)."""
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            connection = sqlite3.connect(self._path, isolation_level=None, timeout=30)
            connection.execute("PRAGMA query_only = 1")
            self._local.connection = connection
        rows: list[tuple[int, bytes]] = connection.execute(
            "SELECT seq, wire FROM outbox WHERE device_id = ? AND seq > ? ORDER BY seq LIMIT ?",
            (device_id, after_seq, limit),
        ).fetchall()
        return rows

    def _close_connection(self) -> None:
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()
            del self._local.connection


@dataclass(frozen=True, slots=True)
class OutboxStats:
    unsent: int
    """Not yet taken by the broker (no PUBACK)."""
    unacknowledged: int
    """Not yet covered by a platform ack (sent or not)."""
    stored: int
    used_bytes: int


@dataclass(frozen=True, slots=True)
class AckOutcome:
    verdict: AckVerdict
    state: DeliveryState
    """The device's delivery state after the ack was applied."""
    recorded: bool
    """New events joined the outbox (a fault, or a re-sync and what it re-sealed)."""


class Outbox:
    """One SQLite file of outgoing events for one device or a simulated fleet.

    One instance per thread; several processes may share the file (SQLite locks).
    """

    def __init__(
        self,
        path: Path,
        *,
        durability: Durability = Durability.FULL,
        resend_window: timedelta = timedelta(days=7),
        budget_bytes: int = 256 * 1024 * 1024,
        event_ids: Callable[[], uuid.UUID] = uuid.uuid4,
        tail_bytes: int = _TAIL_BYTES,
        read_ahead_bytes: int = _READ_AHEAD_BYTES,
    ) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._connection = sqlite3.connect(
            path, isolation_level=None, check_same_thread=False, timeout=30
        )
        _set_wal(self._connection)
        self._connection.execute(f"PRAGMA synchronous = {durability.value.upper()}")
        # Checkpoints are run here, after recording (``_checkpoint_if_due``), not by
        # whichever commit SQLite's automatic one lands on: a sent mark, a row's update,
        # would otherwise pay for copying the megabytes just recorded, on the
        # publishing path.
        self._connection.execute("PRAGMA wal_autocheckpoint = 0")
        self._unchecked_bytes = 0
        self._unchecked_commits = 0
        prepare(self._connection)
        self._durability = durability
        self._resend_window = resend_window
        self._budget_bytes = budget_bytes
        self._chain = ChainWriter(event_ids)
        self._early_marks: dict[str, list[tuple[int, int]]] = {}
        """PUBACKed spans past a gap in the sent prefix (the batch before them still in
        flight), by device: they join the watermark once the gap closes.  Kept in
        memory only: lost, they are published once more, like a mark lost to power."""
        self._tails: dict[str, _Tail] = {}
        self._wire_guess = 512
        """The mean wire size of the last batch read from the file."""
        self._tail_limit = tail_bytes
        self.tail_bytes = 0
        """Wire bytes held in memory by all devices' tails."""
        self._ahead = _ReadAhead(path, read_ahead_bytes)

    # -- recording -----------------------------------------------------------

    def record(self, device_id: str, reading: DeviceReading) -> SealedEvent:
        """Seal ``reading`` as the device's next event and store it durably."""
        (sealed,) = self.record_many(device_id, [reading])
        return sealed

    def record_many(self, device_id: str, readings: Sequence[DeviceReading]) -> list[SealedEvent]:
        """Seal and store several readings of one device in one transaction (one fsync)."""
        return self.record_fleet({device_id: readings})[device_id]

    def record_fleet(
        self, readings: Mapping[str, Sequence[DeviceReading]]
    ) -> dict[str, list[SealedEvent]]:
        """Seal and store the readings of many devices in one transaction: one fsync
        for a whole simulated fleet's tick instead of one per device."""
        now = utc_text(datetime.now(UTC))
        with self._transaction() as connection:
            sealed = {
                device_id: self._chain.append(connection, device_id, device_readings, now)
                for device_id, device_readings in readings.items()
            }
        for device_id, events in sealed.items():
            self._remember(device_id, events)
        self._checkpoint_if_due()
        return sealed

    def record_noting(
        self,
        device_id: str,
        readings: Sequence[DeviceReading],
        note: Callable[[sqlite3.Connection], None],
    ) -> list[SealedEvent]:
        """``record_many``, and ``note`` writes the device's own state (the
        configuration it applied, a command it answered) in the same transaction:
        the event and the state it reports are kept together or not at all."""
        now = utc_text(datetime.now(UTC))
        with self._transaction() as connection:
            sealed = self._chain.append(connection, device_id, readings, now)
            note(connection)
        self._remember(device_id, sealed)
        self._checkpoint_if_due()
        return sealed

    def read_state(self, query: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run ``query`` over the file: how the device's own state is read back."""
        return query(self._connection)

    # -- reading -------------------------------------------------------------

    def head(self, device_id: str) -> tuple[int, str]:
        """The device's last seq and hash (0 and 64 zeros before its first event)."""
        state = self.delivery_state(device_id)
        return state.head_seq, state.head_hash

    def delivery_state(self, device_id: str) -> DeliveryState:
        return delivery_state(self._connection, device_id)

    def unsent(
        self,
        device_id: str,
        *,
        after_seq: int = 0,
        max_events: int = 500,
        max_bytes: int | None = None,
    ) -> list[OutboxEntry]:
        """Unsent events after ``after_seq`` in seq order, at most ``max_events`` and,
        when given, at most ``max_bytes`` of wire bytes (but always at least one)."""
        rows = self._connection.execute(
            "SELECT seq, wire FROM outbox WHERE device_id = ? AND seq > max(?, coalesce("
            "(SELECT sent_seq FROM chain_heads WHERE device_id = ?), 0)) ORDER BY seq LIMIT ?",
            (device_id, after_seq, device_id, max_events),
        ).fetchall()
        return _within_bytes([OutboxEntry(device_id, seq, wire) for seq, wire in rows], max_bytes)

    def following(
        self, device_id: str, *, after_seq: int, max_events: int = 500, max_bytes: int | None = None
    ) -> list[OutboxEntry]:
        """Stored events after ``after_seq``, sent or not, within the same limits as
        ``unsent``: what the link publishes next from its cursor (past the watermark
        every stored event is unacknowledged, so a republish reads the same way)."""
        rows = self._connection.execute(
            "SELECT seq, wire FROM outbox WHERE device_id = ? AND seq > ? ORDER BY seq LIMIT ?",
            (device_id, after_seq, max_events),
        ).fetchall()
        return _within_bytes([OutboxEntry(device_id, seq, wire) for seq, wire in rows], max_bytes)

    def next_batch(
        self, device_id: str, after_seq: int, max_events: int, max_bytes: int
    ) -> OutboxBatch | None:
        """What ``following`` returns, as one batch: from the tail in memory when it
        holds the event after ``after_seq``, else read from the file in one query."""
        tail = self._tails.get(device_id)
        if tail is not None and tail.first_seq <= after_seq + 1 < tail.end_seq:
            start = after_seq + 1 - tail.first_seq
            wires = tail.wires[start : start + max_events]
        else:
            span = self._from_file(device_id, after_seq, max_events, max_bytes)
            if span is None:
                return None
            # Stored seqs are consecutive: pruning only ever takes a chain's front.
            after_seq = span.first_seq - 1
            wires = span.wires[:max_events]
        # With its separator the n-th event ends at ``lengths[n] + n + 1``.
        lengths = list(accumulate(map(len, wires)))
        fits = bisect_right(range(len(wires)), max_bytes, key=lambda n: lengths[n] + n + 1)
        count = max(fits, 1)  # a lone oversized event still goes
        del wires[count:]
        return OutboxBatch(after_seq + 1, after_seq + count, wires, lengths[count - 1] + count)

    def _from_file(
        self, device_id: str, after_seq: int, max_events: int, max_bytes: int
    ) -> _Tail | None:
        """The stored events from the one after ``after_seq`` on, at least a batch of
        them when the file has that many: from what was read ahead when it holds
        them, else read now; and the next ones are read ahead meanwhile."""
        ahead = self._ahead
        span = ahead.span_at(device_id, after_seq)
        # Reading rows that will not fit costs as much as reading those that do:
        # a read now asks for about as many as the byte limit takes.
        batch_rows = min(max_events, max(max_bytes // (self._wire_guess + 1), 1))
        if span is None:
            rows = self._read(device_id, after_seq, batch_rows)
            if not rows:
                return None
            self._wire_guess = sum(len(wire) for _, wire in rows) // len(rows)
            span = ahead.begin(device_id, rows)
        backlog = True
        while len(span.wires) < max_events and span.size + len(span.wires) <= max_bytes:
            if ahead.extend(device_id):
                continue
            rows = self._read(device_id, span.end_seq - 1, batch_rows)
            if not rows or rows[0][0] != span.end_seq:
                backlog = False  # the file ends within this batch
                break
            ahead.append(span, rows)
        if not backlog or ahead.size > ahead.limit_bytes:
            # Only a backlog is read ahead: the end of one, or a device that is
            # just keeping up, would have the link wait for a read that finds
            # little or nothing.  Many devices reading at once keep within the bound.
            ahead.drop(device_id)
        elif not ahead.reading(device_id):
            ahead.read_after(
                device_id,
                span.end_seq - 1,
                max(ahead.limit_bytes // 2 // (self._wire_guess + 1), 1),
            )
        return span

    def _read(self, device_id: str, after_seq: int, limit: int) -> list[tuple[int, bytes]]:
        rows: list[tuple[int, bytes]] = self._connection.execute(
            "SELECT seq, wire FROM outbox WHERE device_id = ? AND seq > ? ORDER BY seq LIMIT ?",
            (device_id, after_seq, limit),
        ).fetchall()
        return rows

    @property
    def read_ahead_bytes(self) -> int:
        """Wire bytes of backlogs read from the file ahead of the link, held in memory."""
        return self._ahead.size

    def tail_events(self, device_id: str) -> int:
        """Events of ``device_id`` held in memory."""
        tail = self._tails.get(device_id)
        return 0 if tail is None else len(tail.wires)

    def first_unsent_seq(self, device_id: str) -> int | None:
        row = self._connection.execute(
            "SELECT min(seq) FROM outbox WHERE device_id = ? AND seq > coalesce("
            "(SELECT sent_seq FROM chain_heads WHERE device_id = ?), 0)",
            (device_id, device_id),
        ).fetchone()
        return row[0] if row else None

    def between(self, device_id: str, from_seq: int, to_seq: int) -> list[OutboxEntry]:
        """Stored events in a seq range, sent or not, for answering a resend command."""
        rows = self._connection.execute(
            "SELECT seq, wire FROM outbox WHERE device_id = ? AND seq BETWEEN ? AND ? ORDER BY seq",
            (device_id, from_seq, to_seq),
        ).fetchall()
        return [OutboxEntry(device_id, seq, wire) for seq, wire in rows]

    def stats(self) -> OutboxStats:
        unsent, unacknowledged, stored = self._connection.execute(
            "SELECT count(*) FILTER (WHERE o.seq > coalesce(h.sent_seq, 0)), "
            "count(*) FILTER (WHERE o.seq > coalesce(h.acked_seq, 0)), count(*) "
            "FROM outbox o LEFT JOIN chain_heads h ON h.device_id = o.device_id"
        ).fetchone()
        return OutboxStats(unsent, unacknowledged, stored, self._used_bytes())

    # -- delivery ------------------------------------------------------------

    def mark_sent(self, device_id: str, first_seq: int, last_seq: int) -> None:
        """The broker acknowledged these events (PUBACK): not yet delivered, but they
        need not go again unless the platform's ack fails to cover them.

        The sent watermark moves over them when they continue the sent prefix (one
        row's update, whatever the batch size); a span past a gap waits in memory for
        the batch before it.  Committed without its own fsync: if power takes this
        mark away, the events are simply published once more (identical bytes,
        deduplicated upstream); the next recorded event's fsync makes it durable anyway."""
        early = self._early_marks.setdefault(device_id, [])
        early.append((first_seq, last_seq))
        early.sort()
        sent = self._connection.execute(
            "SELECT sent_seq FROM chain_heads WHERE device_id = ?", (device_id,)
        ).fetchone()
        through = sent[0] if sent else 0
        while early and early[0][0] <= through + 1:
            through = max(through, early.pop(0)[1])
        if not early:
            del self._early_marks[device_id]
        if sent is None or through <= sent[0]:
            return
        tail = self._tails.get(device_id)
        if tail is not None:
            self.tail_bytes -= tail.drop_through(through)
        self._ahead.trim(device_id, through)
        if self._durability is Durability.NORMAL:
            self._mark(device_id, through)
            return
        self._connection.execute("PRAGMA synchronous = NORMAL")
        try:
            self._mark(device_id, through)
        finally:
            self._connection.execute(f"PRAGMA synchronous = {self._durability.value.upper()}")

    def _mark(self, device_id: str, through: int) -> None:
        with self._transaction() as connection:
            mark_sent_through(connection, device_id, through, datetime.now(UTC))

    def anchor(self, device_id: str) -> DeliveryState:
        """The platform holds nothing for this id (or never said): the chain starts at
        genesis, and whatever was recorded meanwhile (sealed from seq 1) stands."""
        with self._transaction() as connection:
            anchor_at_genesis(connection, device_id)
            return delivery_state(connection, device_id)

    def acknowledge(
        self, device_id: str, stored_through: int, ack_hash: str, now: datetime | None = None
    ) -> AckOutcome:
        """Apply the platform's ack (DESIGN §4.2) in one transaction: move the
        watermark, anchor or re-base an unanchored chain after the platform's head,
        or record a chain-mismatch fault once per distinct ack."""
        moment = now or datetime.now(UTC)
        with self._transaction() as connection:
            state = delivery_state(connection, device_id)
            own = own_hash(connection, device_id, state, stored_through)
            verdict = judge_ack(state, stored_through, ack_hash, own)
            recorded = False
            if verdict is AckVerdict.ADVANCE:
                advance(connection, device_id, stored_through, moment)
            elif verdict is AckVerdict.ANCHOR:
                anchor_at_genesis(connection, device_id)
            elif verdict is AckVerdict.REBASE:
                # Every stored event gets a new seq and hash: the old bytes must not go.
                self._forget(device_id)
                self._chain.rebase(connection, device_id, state, stored_through, ack_hash, moment)
                recorded = True
            elif verdict is AckVerdict.MISMATCH:
                ack = (stored_through, ack_hash, own)
                recorded = self._chain.raise_mismatch(
                    connection, device_id, ack, state.head_seq, moment
                )
            return AckOutcome(verdict, delivery_state(connection, device_id), recorded)

    # -- limits --------------------------------------------------------------

    def enforce_limits(self, device_ids: Iterable[str], now: datetime | None = None) -> None:
        """Prune acknowledged events past the resend window; over budget, prune older
        acknowledged events too; if unacknowledged events alone exceed it, raise a
        fault event once per episode, and clear it once they no longer do."""
        moment = now or datetime.now(UTC)
        with self._transaction() as connection:
            # Per device: acknowledged, and sent by a mark older than the window.
            expired = connection.execute(
                "SELECT h.device_id, min(h.acked_seq, max(m.through_seq)) FROM chain_heads h "
                "JOIN sent_marks m ON m.device_id = h.device_id AND m.sent_at < ? "
                "GROUP BY h.device_id",
                (utc_text(moment - self._resend_window),),
            ).fetchall()
            for device_id, through in expired:
                connection.execute(
                    "DELETE FROM outbox WHERE device_id = ? AND seq <= ?", (device_id, through)
                )
                # The marks below it date nothing that is still stored.
                connection.execute(
                    "DELETE FROM sent_marks WHERE device_id = ? AND through_seq < ?",
                    (device_id, through),
                )
            exhausted = False
            while self._used_bytes() > self._budget_bytes:
                # Acknowledged events are also sent (``advance``): each device's oldest go.
                deleted = connection.execute(
                    "DELETE FROM outbox WHERE (device_id, seq) IN (SELECT o.device_id, o.seq "
                    "FROM chain_heads h JOIN outbox o ON o.device_id = h.device_id "
                    "AND o.seq <= h.acked_seq LIMIT ?)",
                    (_PRUNE_CHUNK,),
                ).rowcount
                if deleted == 0:
                    exhausted = True  # only unacknowledged events are left
                    break
            self._report_budget(connection, set(device_ids), exhausted, moment)

    def close(self) -> None:
        self._ahead.close()
        self._connection.close()

    # -- the tail in memory ------------------------------------------------------

    def _remember(self, device_id: str, events: Sequence[SealedEvent]) -> None:
        """Keep committed events in the device's tail, its oldest going first over
        the limit.  A gap (an event recorded elsewhere: a fault, another process)
        starts the tail afresh, so the tail is always consecutive."""
        if not events:
            return
        tail = self._tails.get(device_id)
        if tail is None or tail.end_seq != events[0].seq:
            self._forget(device_id)
            tail = self._tails[device_id] = _Tail(events[0].seq)
        for event in events:
            wire = wire_bytes(event)
            tail.wires.append(wire)
            tail.size += len(wire)
            self.tail_bytes += len(wire)
            self._unchecked_bytes += len(wire)
        if self.tail_bytes > self._tail_limit:
            over = self.tail_bytes - self._tail_limit
            freed, count = 0, 0
            while count < len(tail.wires) and freed < over:
                freed += len(tail.wires[count])
                count += 1
            self.tail_bytes -= tail.drop_through(tail.first_seq + count - 1)
            if not tail.wires:
                del self._tails[device_id]

    def _forget(self, device_id: str) -> None:
        """Every stored event of the device may be about to change (a re-base):
        nothing kept in memory of it, or being read, may be published."""
        tail = self._tails.pop(device_id, None)
        if tail is not None:
            self.tail_bytes -= tail.size
        self._ahead.drop(device_id)

    # -- inside transactions ---------------------------------------------------

    def _report_budget(
        self,
        connection: sqlite3.Connection,
        device_ids: set[str],
        exhausted: bool,
        moment: datetime,
    ) -> None:
        """One episode per device, kept in the file: raised when pruning every
        acknowledged event still leaves the budget exceeded, cleared once not."""
        episode_open = {
            device_id
            for (device_id,) in connection.execute(
                "SELECT device_id FROM chain_heads WHERE outbox_full = 1"
            )
        }
        if exhausted:
            holding = {
                device_id
                for (device_id,) in connection.execute(
                    "SELECT device_id FROM chain_heads WHERE last_seq > acked_seq"
                )
            }
            changes, kind, flag = (device_ids & holding) - episode_open, "fault.raised", 1
        else:
            changes, kind, flag = device_ids & episode_open, "fault.cleared", 0
        for device_id in sorted(changes):
            reading = _outbox_fault(kind, moment, self._budget_bytes)
            self._chain.append(connection, device_id, [reading], utc_text(moment))
            connection.execute(
                "UPDATE chain_heads SET outbox_full = ? WHERE device_id = ?", (flag, device_id)
            )

    def _used_bytes(self) -> int:
        pages = self._connection.execute("PRAGMA page_count").fetchone()[0]
        free = self._connection.execute("PRAGMA freelist_count").fetchone()[0]
        size = self._connection.execute("PRAGMA page_size").fetchone()[0]
        return int((pages - free) * size)

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self._connection.execute("BEGIN IMMEDIATE")
        try:
            yield self._connection
        except BaseException:
            self._connection.execute("ROLLBACK")
            raise
        self._connection.execute("COMMIT")
        self._unchecked_commits += 1
        if self._unchecked_commits >= _CHECKPOINT_COMMITS:
            self._checkpoint()  # a file that is written without recording, for long

    def _checkpoint_if_due(self) -> None:
        if self._unchecked_bytes >= _CHECKPOINT_BYTES:
            self._checkpoint()

    def _checkpoint(self) -> None:
        # PASSIVE: never waits for another process's readers; what it cannot copy
        # now goes at the next one.
        self._connection.execute("PRAGMA wal_checkpoint(PASSIVE)")
        self._unchecked_bytes = self._unchecked_commits = 0


def _outbox_fault(kind: str, moment: datetime, budget_bytes: int) -> DeviceReading:
    data: dict[str, object] = {"fault_code": OUTBOX_FULL_FAULT}
    if kind == "fault.raised":
        data |= {
            "severity": "warning",
            "message": f"outbox holds more unacknowledged events than its {budget_bytes}-byte "
            "budget; nothing is dropped, but the platform has not acknowledged them for long",
        }
    return DeviceReading(type=kind, occurred_at=moment, data=data)


def _set_wal(connection: sqlite3.Connection, attempts: int = 50) -> None:
    """Switch to WAL.  Two processes opening a new file at once contend for the
    switch, and SQLite answers that contention with "locked" at once (the busy
    timeout does not cover it), so it is retried for a moment."""
    for attempt in range(attempts):
        try:
            connection.execute("PRAGMA journal_mode = WAL")
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or attempt == attempts - 1:
                raise
            time.sleep(0.02)
        else:
            return


def _within_bytes(entries: list[OutboxEntry], max_bytes: int | None) -> list[OutboxEntry]:
    if max_bytes is None:
        return entries
    kept: list[OutboxEntry] = []
    total = 0
    for entry in entries:
        total += len(entry.wire) + 1
        if kept and total > max_bytes:
            break
        kept.append(entry)
    return kept
