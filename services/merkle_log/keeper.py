"""Keeping the log: every stored event becomes a leaf in the store's global order,
and a signed checkpoint follows the log as it grows.

The store's global order (``EventLog.read_records``) never hands out an event before
one committed earlier in that order, so appending in the order read gives every
replayer the same tree.  A batch's leaves, their nodes and the log's place commit in
one transaction: a crash leaves all of them behind or all ahead.
"""

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Final

from services.eventstore import Cursor, EventLog, EventRecord
from services.merkle_log.log_store import LoggedEvent, MerkleLog, StoredCheckpoint
from services.transparency import Checkpoint, CompactRange, Node, Signer, leaf_hash

log = logging.getLogger(__name__)

SIGN_EVERY_S: Final = 10.0
"""DESIGN §11: at most every 10 s while the log grows."""


def extend(tree: CompactRange, records: list[EventRecord]) -> tuple[list[LoggedEvent], list[Node]]:
    """The leaves ``records`` add to ``tree`` (which it appends them to), and the
    interior nodes they complete (leaf hashes are not stored: the leaves' event hashes
    give them)."""
    leaves: list[LoggedEvent] = []
    nodes: list[Node] = []
    for record in records:
        leaves.append(LoggedEvent(tree.size, record.stream_id, record.seq, record.hash))
        nodes += tree.append(leaf_hash(bytes.fromhex(record.hash)))[1:]
    return leaves, nodes


class LogKeeper:
    """Follows the store into the log, and signs checkpoints while it grows.

    Between a ``step`` that logged something and the next, the keeper may be reading
    ahead from ``events``: leave that store to it (``catch_up`` and ``run`` end with
    nothing in flight, as does ``close``).
    """

    def __init__(
        self,
        events: EventLog,
        merkle_log: MerkleLog,
        signer: Signer | None,
        *,
        sign_every_s: float = SIGN_EVERY_S,
        batch_size: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.events = events
        self.log = merkle_log
        self.signer = signer
        self.sign_every_s = sign_every_s
        self.batch_size = batch_size
        self.clock = clock
        self._last_signed: float | None = None
        self._ahead = _ReadAhead()

    def step(self) -> int:
        """Log the next batch of stored events; how many (0: caught up)."""
        after = self.log.position()
        records = self._ahead.take(after) if self._ahead else None
        if records is None:
            records = self.events.read_records(after, self.batch_size)
        if not records:
            return 0
        # The next batch is read while this one is hashed and written (the database's
        # time overlaps ours); only while batches keep coming, so that the store is
        # never used by two threads at once (``run_once`` waits on it when caught up).
        self._ahead.start(self.events, records[-1].cursor, self.batch_size)
        with self.log.engine.begin() as connection:
            # Loaded in the writing transaction, and checked against where the batch
            # starts: a rebuild in between cannot leave us appending to a tree that is
            # no longer there.
            if self.log.position(connection) != after:
                self._ahead.discard()
                return self.step()
            tree = self.log.compact_range(connection)
            leaves, nodes = extend(tree, records)
            self.log.write_batch(connection, leaves, nodes, records[-1].cursor)
        return len(records)

    def close(self) -> None:
        """Finish any read ahead and stop its thread (the store stays open: it is the
        caller's)."""
        self._ahead.close()

    def catch_up(self) -> int:
        """Log everything stored so far; how many events that took."""
        total = 0
        while logged := self.step():
            total += logged
        return total

    def sign_if_due(self, *, now: bool = False) -> StoredCheckpoint | None:
        """Sign a checkpoint of the log as it stands if it grew since the last one and
        the last was signed long enough ago (``now``: whatever the time)."""
        if self.signer is None:
            return None
        due = self._last_signed is None or self.clock() - self._last_signed >= self.sign_every_s
        if not (due or now):
            return None
        with self.log.engine.begin() as connection:
            size = self.log.size(connection)
            latest = max((kept.size for kept in self.log.checkpoints(connection)), default=-1)
            if size <= latest:
                return None
            root = self.log.root_at(size, connection)
            note = self.signer.sign(Checkpoint(self.signer.name, size, root).text())
            stored = self.log.save_checkpoint(size, root, note, connection)
        self._last_signed = self.clock()
        log.info("signed log checkpoint at size %d", size)
        return stored

    def run_once(
        self,
        on_checkpoint: Callable[[StoredCheckpoint], None] | None = None,
        idle_wait_s: float = 1.0,
    ) -> int:
        """Log a batch, sign if due (``on_checkpoint`` gets a new checkpoint), and wait
        a little for appends when caught up; how many events were logged."""
        logged = self.step()
        signed = self.sign_if_due()
        if signed is not None and on_checkpoint is not None:
            on_checkpoint(signed)
        if logged == 0:
            self.events.wait_for_appends(idle_wait_s)
        return logged

    def run(
        self,
        stop: threading.Event,
        on_checkpoint: Callable[[StoredCheckpoint], None] | None = None,
        idle_wait_s: float = 1.0,
    ) -> None:
        """Keep the log until ``stop`` is set."""
        while not stop.is_set():
            self.run_once(on_checkpoint, idle_wait_s)


class _ReadAhead:
    """At most one read of the store in flight on a helper thread."""

    def __init__(self) -> None:
        self._pool: ThreadPoolExecutor | None = None
        self._after: Cursor | None = None
        self._pending: Future[list[EventRecord]] | None = None

    def __bool__(self) -> bool:
        return self._pending is not None

    def start(self, events: EventLog, after: Cursor, limit: int) -> None:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="log-read-ahead")
        self._after, self._pending = after, self._pool.submit(events.read_records, after, limit)

    def take(self, after: Cursor) -> list[EventRecord] | None:
        """The batch read ahead if it starts at ``after`` (else ``None``: read again)."""
        pending, started = self._pending, self._after
        self._pending = self._after = None
        if pending is None:
            return None
        records = pending.result()
        return records if started == after else None

    def discard(self) -> None:
        if self._pending is not None:
            self._pending.exception()  # let it finish (failed or not): the store is free
        self._pending = self._after = None

    def close(self) -> None:
        self.discard()
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
