"""Checking the bytes of events in worker processes, in order, in constant memory.

Hashing, parsing, canonical form and inclusion proofs of one event need nothing
from any other event, and they are most of the cost; links, seals and sessions need
the events in order and cost little.  So the file is cut into blocks of whole lines,
workers read and prepare each block (``prepare_line`` on every line, consecutive
events checked among themselves), and the main process takes the prepared blocks
back in file order.  At most a few blocks are in flight:
memory stays flat however large the bundle.
"""

import gc
import multiprocessing
import os
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final, NamedTuple

from coreline_verify.bundle import EVENT_LINE_START, PreparedEvent, prepare_event
from coreline_verify.errors import BundleUnreadable, NotCanonicalError
from coreline_verify.merkle import InclusionChecker

PUNCHES: Final = "cores.punched*"
"""A fold entry standing for consecutive punches of one session and cartridge."""


class EventRun(NamedTuple):
    """Consecutive events of one stream whose bytes, hashes, inclusion proofs and
    links to each other a worker has checked: the process that checks in order only
    links ``first`` to what came before and folds the rest's data."""

    first: PreparedEvent
    last_seq: int
    last_hash: str
    last_log_index: int
    events: int
    folds: list[tuple[Any, int, Any, int]]
    """``(type, seq, data, log_index)`` of the events after the first that carry data
    for sessions or keys; a run of punches of one session and cartridge travels as
    ``(PUNCHES, last seq, (session_id, cartridge_id, [cores, ...]), log_index)``."""


Prepared = PreparedEvent | EventRun | bytes | BundleUnreadable
"""A line (or run of event lines) made ready for the checks in order: an event's
bytes already checked, a run of events, any other line as it is, or why an event
line could not be read."""

_BLOCK_BYTES: Final = 1 << 20
_IN_FLIGHT_PER_JOB: Final = 3


def prepare_line(line: bytes, inclusion: InclusionChecker) -> Prepared:
    if not line.startswith(EVENT_LINE_START):
        return line
    try:
        return prepare_event(line, inclusion)
    except (BundleUnreadable, NotCanonicalError) as error:
        return BundleUnreadable(str(error))


_checker: InclusionChecker | None = None
_checker_for: tuple[int, bytes] | None = None


def _prepare_block(block: bytes, size: int, root: bytes) -> list[Prepared]:
    # One checker per worker process, kept across blocks: its verified nodes make
    # the next block's proofs cheap.
    global _checker, _checker_for
    if _checker is None or _checker_for != (size, root):
        _checker, _checker_for = InclusionChecker(size, root), (size, root)
        # What a worker makes (parsed events, runs) holds no cycles: reference
        # counting frees it all, and the cycle collector's passes over thousands of
        # young dicts a block are pure cost (measured: several per cent).
        gc.disable()
    lines = block.split(b"\n")
    if lines and not lines[-1]:
        lines.pop()  # the block ends at a line's end
    return _prepare_lines(lines, _checker)


class _RunBuilder:
    def __init__(self, first: PreparedEvent) -> None:
        self.first = first
        self.last = first
        self.count = 1
        self.folds: list[tuple[Any, int, Any, int]] = []
        self._punches: tuple[str, str, list[int]] | None = None
        """The condensed punches the last fold entry holds, if it holds punches."""

    def take(self, event: PreparedEvent) -> bool:
        """Add ``event`` if it passes every check in order given that the run's last
        event did: the next seq, linked to its hash, same device, later in the log,
        its own bytes and proof sound.  (Refused, it goes to the ordered checks on
        its own.)"""
        last = self.last
        if not (
            event.bytes_failure is None
            and event.inclusion_failure is None
            and event.seq == last.seq + 1
            and event.prev_hash == last.event_hash
            and event.device_id == last.device_id
            and event.log_index > last.log_index
        ):
            return False
        self.last = event
        self.count += 1
        data = event.data
        if data is not None:
            self._fold(event, data)
        return True

    def _fold(self, event: PreparedEvent, data: Any) -> None:
        folds = self.folds
        if event.type == "cores.punched" and type(data) is dict:
            session, cartridge, cores = (
                data.get("session_id"), data.get("cartridge_id"), data.get("cores"),
            )  # fmt: skip
            if type(session) is str and type(cartridge) is str and type(cores) is int:
                punches = self._punches
                if punches is not None and punches[0] == session and punches[1] == cartridge:
                    punches[2].append(cores)
                    folds[-1] = (PUNCHES, event.seq, punches, event.log_index)
                else:
                    self._punches = punches = (session, cartridge, [cores])
                    folds.append((PUNCHES, event.seq, punches, event.log_index))
                return
        self._punches = None
        folds.append((event.type, event.seq, data, event.log_index))

    def done(self) -> EventRun | PreparedEvent:
        if self.count == 1:
            return self.first
        last = self.last
        return EventRun(
            self.first, last.seq, last.event_hash, last.log_index, self.count, self.folds
        )


def _prepare_lines(lines: list[bytes], checker: InclusionChecker) -> list[Prepared]:
    prepared: list[Prepared] = []
    run: _RunBuilder | None = None
    for position, line in enumerate(lines):
        item = prepare_line(line, checker)
        if type(item) is PreparedEvent:
            if run is not None:
                if run.take(item):
                    continue
                prepared.append(run.done())
            run = _RunBuilder(item)
            if item.bytes_failure is None and item.inclusion_failure is None:
                continue
            # A failing event ends the run and is checked on its own; the lines after
            # it go on their own too (the check in order stops at it anyway).
            prepared.append(run.done())
            prepared.extend(prepare_line(rest, checker) for rest in lines[position + 1 :])
            return prepared
        if run is not None:
            prepared.append(run.done())
            run = None
        prepared.append(item)
    if run is not None:
        prepared.append(run.done())
    return prepared


def _spans(path: Path, start: int) -> Iterator[tuple[int, int]]:
    """Byte ranges of about a block each, from ``start``, cut at line ends."""
    with path.open("rb") as stream:
        stream.seek(0, os.SEEK_END)
        size = stream.tell()
        begin = start
        while begin < size:
            stream.seek(min(begin + _BLOCK_BYTES, size))
            stream.readline()
            end = stream.tell()
            yield begin, end
            begin = end


def _prepare_span(path: str, begin: int, end: int, size: int, root: bytes) -> list[Prepared]:
    # Each worker reads its own bytes: the main process ships only offsets.
    with open(path, "rb") as stream:
        stream.seek(begin)
        return _prepare_block(stream.read(end - begin), size, root)


@contextmanager
def prepared_in_workers(
    path: Path, start: int, inclusion: InclusionChecker, jobs: int
) -> Iterator[Iterator[Prepared]]:
    """The lines of the file at ``path`` from byte ``start`` on, prepared by ``jobs``
    worker processes, in file order."""
    size, root = inclusion.tree
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:

        def prepared() -> Iterator[Prepared]:
            in_flight: deque[Future[list[Prepared]]] = deque()
            for begin, end in _spans(path, start):
                in_flight.append(pool.submit(_prepare_span, str(path), begin, end, size, root))
                if len(in_flight) >= jobs * _IN_FLIGHT_PER_JOB:
                    yield from in_flight.popleft().result()
            while in_flight:
                yield from in_flight.popleft().result()

        try:
            yield prepared()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
