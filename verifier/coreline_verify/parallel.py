"""Checking the bytes of events a block at a time, in order, in constant memory:
in this process, or in worker processes.

Hashing, parsing, canonical form and inclusion proofs of one event need nothing
from any other event, and they are most of the cost; links, seals and sessions need
the events in order and cost little.  So the file is cut into blocks of whole lines,
each block is prepared (``prepare_line`` on every line, consecutive events checked
among themselves and gathered into runs, seals under keys already read verified),
and the checks in order take the prepared blocks in file order.  In workers, each
reads its own blocks and at most a few blocks are in flight: memory stays flat
however large the bundle.
"""

import gc
import io
import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final, NamedTuple

from coreline_verify.bundle import (
    EVENT_LINE_START,
    SEAL_LINE_START,
    PreparedEvent,
    prepare_event,
    read_line,
)
from coreline_verify.errors import BundleUnreadable, NotCanonicalError
from coreline_verify.merkle import InclusionChecker
from coreline_verify.seals import VerifiedSeal, signature_verifies

PUNCHES: Final = "cores.punched*"
"""A fold entry standing for consecutive punches of one session and cartridge."""


class EventRun(NamedTuple):
    """Consecutive events of one stream whose bytes, hashes, inclusion proofs and
    links to each other were checked as their block was prepared: the checks in
    order only link ``first`` to what came before and fold the rest's data."""

    first: PreparedEvent
    last_seq: int
    last_hash: str
    last_log_index: int
    events: int
    folds: list[tuple[Any, int, Any, int]]
    """``(type, seq, data, log_index)`` of the events after the first that carry data
    for sessions or keys; a run of punches of one session and cartridge travels as
    ``(PUNCHES, last seq, (session_id, cartridge_id, [cores, ...]), log_index)``."""


Prepared = PreparedEvent | EventRun | VerifiedSeal | bytes | BundleUnreadable
"""A line (or run of event lines) made ready for the checks in order: an event's
bytes already checked, a run of events, a seal line whose signature verified, any
other line as it is, or why an event line could not be read."""

KnownKeys = dict[str, dict[str, bytes]]
"""Each device's registered keys, by key id, as raw public keys: those the checks in
order had read when a block was handed out."""

# About 2,300 events a block: the main process's cost per block (handing it out,
# taking its results back) is 0.6 µs an event at 1 MB, 0.25 at 4 MB, with the
# workers' own cost the same; a block in flight is only its offsets.
_BLOCK_BYTES: Final = 4 << 20
_IN_FLIGHT_PER_JOB: Final = 3


def prepare_line(line: bytes, inclusion: InclusionChecker) -> Prepared:
    """A line, with or without its line feed, made ready for the checks in order."""
    if not line.startswith(EVENT_LINE_START):
        return line
    try:
        return prepare_event(line, inclusion)
    except (BundleUnreadable, NotCanonicalError) as error:
        return BundleUnreadable(str(error))


_checker: InclusionChecker | None = None
_checker_for: tuple[int, bytes] | None = None


def _prepare_block(block: bytes, size: int, root: bytes, keys: KnownKeys) -> list[Prepared]:
    # One checker per worker process, kept across blocks: its verified nodes make
    # the next block's proofs cheap.
    global _checker, _checker_for
    if _checker is None or _checker_for != (size, root):
        _checker, _checker_for = InclusionChecker(size, root), (size, root)
        # What a worker makes (parsed events, runs) holds no cycles: reference
        # counting frees it all, and the cycle collector's passes over thousands of
        # young dicts a block are pure cost (measured: several per cent).
        gc.disable()
    # Lines with their line feeds, cut where ``memchr`` finds them (``bytes.split``
    # looks at every byte in turn, several times slower).
    return _prepare_lines(io.BytesIO(block), _checker, keys)


class _RunBuilder:
    def __init__(self, first: PreparedEvent) -> None:
        self.first = first
        self.last = first
        # A first event whose seq is not an integer fails the checks in order, which
        # look no further: nothing may join it (and nothing here may raise on it).
        self._next_seq = first.seq + 1 if type(first.seq) is int else None
        self.count = 1
        self.folds: list[tuple[Any, int, Any, int]] = []
        self._punches: tuple[str, str, list[int]] | None = None
        """The punches of one session and cartridge being condensed, not yet in
        ``folds``; ``_punched`` is the last of them."""
        self._punched = first

    def take(self, event: PreparedEvent) -> bool:
        """Add ``event`` if it passes every check in order given that the run's last
        event did: the next seq, linked to its hash, same device, later in the log,
        its own bytes and proof sound.  (Refused, it goes to the ordered checks on
        its own.)"""
        # Unpacked at once: a field read by name is an attribute look-up each.
        (log_index, _, bytes_failure, inclusion_failure, seq, prev_hash, device_id, kind,
         data) = event  # fmt: skip
        last = self.last
        if not (
            seq == self._next_seq
            and type(seq) is int
            and bytes_failure is None
            and inclusion_failure is None
            and prev_hash == last.event_hash
            and device_id == last.device_id
            and log_index > last.log_index
        ):
            return False
        self.last = event
        self._next_seq = seq + 1
        self.count += 1
        if data is None:
            return True
        if kind == "cores.punched" and type(data) is dict:
            session, cartridge, cores = (
                data.get("session_id"), data.get("cartridge_id"), data.get("cores"),
            )  # fmt: skip
            if type(session) is str and type(cartridge) is str and type(cores) is int:
                punches = self._punches
                if punches is None or punches[0] != session or punches[1] != cartridge:
                    self._end_punches()
                    self._punches = punches = (session, cartridge, [])
                punches[2].append(cores)
                self._punched = event
                return True
        self._end_punches()
        self.folds.append((event.type, event.seq, data, event.log_index))
        return True

    def _end_punches(self) -> None:
        if self._punches is not None:
            punched = self._punched
            self.folds.append((PUNCHES, punched.seq, self._punches, punched.log_index))
            self._punches = None

    def done(self) -> EventRun | PreparedEvent:
        if self.count == 1:
            return self.first
        self._end_punches()
        last = self.last
        return EventRun(
            self.first, last.seq, last.event_hash, last.log_index, self.count, self.folds
        )


def _prepare_lines(
    lines: Iterator[bytes], checker: InclusionChecker, keys: KnownKeys
) -> list[Prepared]:
    prepared: list[Prepared] = []
    run: _RunBuilder | None = None
    sealed: PreparedEvent | None = None  # the event the seal lines that follow are for
    for line in lines:
        if not line.startswith(EVENT_LINE_START):
            if run is not None:
                prepared.append(run.done())
                run = None
            if sealed is not None and line.startswith(SEAL_LINE_START):
                prepared.append(_verified_seal(line, sealed, keys))
            else:
                sealed = None
                prepared.append(line)
            continue
        item: PreparedEvent | BundleUnreadable
        try:
            item = prepare_event(line, checker)
        except (BundleUnreadable, NotCanonicalError) as error:
            item = BundleUnreadable(str(error))
        if type(item) is PreparedEvent:
            sealed = item
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
            prepared.extend(prepare_line(rest, checker) for rest in lines)
            return prepared
        if run is not None:
            prepared.append(run.done())
            run = None
        sealed = None
        prepared.append(item)
    if run is not None:
        prepared.append(run.done())
    return prepared


def _verified_seal(line: bytes, event: PreparedEvent, keys: KnownKeys) -> VerifiedSeal | bytes:
    """The seal line after ``event``, its signature verified here if its key is known
    and it verifies; else the line as it is, for the checks in order to verify (and
    name what fails).  They take a verified seal only for the same device, event
    hash and registered key: the signature is all that is checked here."""
    device_id = event.device_id
    device_keys = keys.get(device_id) if type(device_id) is str else None
    if device_keys is None or event.bytes_failure is not None:
        return line
    try:
        seal = read_line(line).get("seal")
    except BundleUnreadable:
        return line
    if type(seal) is not dict:
        return line
    key_id = seal.get("key_id")
    public_key = device_keys.get(key_id) if type(key_id) is str else None
    if public_key is None or not signature_verifies(public_key, seal, device_id, event.event_hash):
        return line
    return VerifiedSeal(seal, device_id, event.event_hash, public_key)


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


def _prepare_span(
    path: str, begin: int, end: int, size: int, root: bytes, keys: KnownKeys
) -> list[Prepared]:
    # Each worker reads its own bytes: the main process ships only offsets.
    with open(path, "rb") as stream:
        stream.seek(begin)
        return _prepare_block(stream.read(end - begin), size, root, keys)


def prepared_here(
    path: Path, start: int, inclusion: InclusionChecker, known_keys: Callable[[], KnownKeys]
) -> Iterator[Prepared]:
    """The lines of the file at ``path`` from byte ``start`` on, prepared a block at a
    time in this process, in file order; seals under the keys ``known_keys()``
    returns before each block are verified as it is prepared."""
    with path.open("rb") as stream:
        for begin, end in _spans(path, start):
            stream.seek(begin)
            # The block is held by its reader alone, so it is freed before the next
            # one is read: one block in memory at a time.
            lines = io.BytesIO(stream.read(end - begin))
            prepared = _prepare_lines(lines, inclusion, known_keys())
            del lines
            yield from prepared


@contextmanager
def prepared_in_workers(
    path: Path,
    start: int,
    inclusion: InclusionChecker,
    jobs: int,
    known_keys: Callable[[], KnownKeys],
) -> Iterator[Iterator[Prepared]]:
    """The lines of the file at ``path`` from byte ``start`` on, prepared by ``jobs``
    worker processes, in file order; seals under the keys ``known_keys()`` returns
    when a block is handed out (a copy: it is sent later) are verified there too."""
    size, root = inclusion.tree
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:

        def prepared() -> Iterator[Prepared]:
            in_flight: deque[Future[list[Prepared]]] = deque()
            for begin, end in _spans(path, start):
                in_flight.append(
                    pool.submit(_prepare_span, str(path), begin, end, size, root, known_keys())
                )
                if len(in_flight) >= jobs * _IN_FLIGHT_PER_JOB:
                    yield from in_flight.popleft().result()
            while in_flight:
                yield from in_flight.popleft().result()

        try:
            yield prepared()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
