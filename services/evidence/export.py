"""The evidence export (``coreline audit export``, ``GET /api/v1/audit/evidence``):
reads a device's registry and device streams, their seals and the log, and hands
them to the writer as cursors, so memory stays flat however long the streams.

Two steps.  ``plan_export`` reads what decides the bundle (the latest checkpoint, the
streams' ranges, the witnesses' consistency proofs) and refuses, with a message that
says what to do, anything the bundle could not prove: no checkpoint yet, events the
checkpoint does not cover yet, a witness checkpoint that is not the platform's or is
ahead of it.  ``write_export`` then streams the bundle; only its events and proofs
are read while writing.
"""

import contextlib
import logging
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import BinaryIO, Final, cast
from uuid import UUID

import orjson
from sqlalchemy import func, select

from schemas.streams import device_stream, registry_stream
from services.audit import find_session_stream
from services.eventstore import EventStore, StoredEvent
from services.evidence.writer import (
    BundleSummary,
    LogEvidence,
    LoggedEvent,
    Scope,
    StreamEvidence,
    StreamSeal,
    WitnessEvidence,
    write_bundle,
)
from services.merkle_log import MerkleLog, NotInLogError, StoredCheckpoint, log_leaves
from services.transparency import Checkpoint, NoteError, Verifier

log = logging.getLogger(__name__)
PAGE: Final = 500
"""Events read from the store at a time."""


class ExportError(ValueError):
    """The bundle asked for cannot be exported (the message says why, and what to do)."""


class NothingToExportError(ExportError):
    """The store holds no event of the session or device (in the period)."""


@dataclass(frozen=True, slots=True)
class StreamRange:
    stream_id: str
    first_seq: int
    last_seq: int


@dataclass(frozen=True, slots=True)
class ExportPlan:
    """Everything the bundle states, decided before a byte is written."""

    scope: Scope
    log: LogEvidence
    checkpoint_size: int
    streams: tuple[StreamRange, ...]
    witnesses: tuple[WitnessEvidence, ...]


def plan_export(
    store: EventStore,
    merkle_log: MerkleLog,
    verifier: Verifier,
    scope: Scope,
    witness_notes: Sequence[tuple[str, str]] = (),
    session_device: str | None = None,
) -> ExportPlan:
    """The plan of a session or device bundle against the log's latest checkpoint.
    ``witness_notes`` are (where it came from, signed checkpoint note) pairs;
    ``session_device`` is where a read model says a session is (its device's stream is
    read first, and every stream only if it does not hold the session)."""
    latest = merkle_log.latest_checkpoint()
    if latest is None:
        raise ExportError(
            "the log has no signed checkpoint yet: let the projector's log keeper sign one "
            "(or run `coreline audit rebuild-log`), then export again"
        )
    _check_signed(verifier, latest.note, "the log's latest checkpoint")
    if scope.device_id is not None:  # before its range: the stream may be gone whole
        _check_nothing_lost(store, merkle_log, scope.device_id, latest.size)
    device_id, device_range = _device_range(store, scope, session_device)
    _check_nothing_lost(store, merkle_log, registry_stream(device_id), latest.size)
    _check_nothing_lost(store, merkle_log, device_range.stream_id, latest.size)
    streams = [*_registry_range(store, device_id), device_range]
    for stream in streams:
        _check_covered(merkle_log, stream, latest.size)
    witnesses = tuple(
        _witness(merkle_log, verifier, latest, source, note) for source, note in witness_notes
    )
    log = LogEvidence(verifier.name, verifier.text(), latest.note)
    return ExportPlan(scope, log, latest.size, tuple(streams), witnesses)


def write_export(
    out: BinaryIO, store: EventStore, merkle_log: MerkleLog, plan: ExportPlan
) -> BundleSummary:
    """Stream the planned bundle to ``out`` (``EvidenceError``/``ExportError`` leave it
    incomplete: discard it)."""
    streams = (
        StreamEvidence(
            stream.stream_id,
            stream.first_seq,
            stream.last_seq,
            events=_logged_events(store, merkle_log, stream, plan.checkpoint_size),
            seals=_seals(store, stream),
        )
        for stream in plan.streams
    )
    return write_bundle(
        out, scope=plan.scope, log=plan.log, streams=streams, witnesses=plan.witnesses
    )


# -- what the bundle holds ---------------------------------------------------------


def _device_range(
    store: EventStore, scope: Scope, session_device: str | None
) -> tuple[str, StreamRange]:
    if scope.kind == "session" and scope.session_id is not None:
        session_id = UUID(scope.session_id)
        if session_device is not None:
            with contextlib.suppress(NothingToExportError):
                return _session_range(store, session_id, device_stream(session_device))
        return _session_range(store, session_id, find_session_stream(store, session_id))
    if scope.kind == "device" and scope.device_id is not None:
        return scope.device_id, _period_range(store, scope)
    raise ExportError("export a session or a device")


def _session_range(
    store: EventStore, session_id: UUID, stream_id: str | None
) -> tuple[str, StreamRange]:
    """From the installation of the cartridge the session started with (so that the
    verifier can compute coverage) through the first seal at or after its
    ``session.ended`` (so that every event is sealed)."""
    if stream_id is None:
        raise NothingToExportError(f"no stored event names session {session_id}")
    wanted = str(session_id)
    installed: dict[str, int] = {}
    first = ended = last_named = None
    for event in _events(store, stream_id, 1, None):
        if event.type not in _SESSION_TYPES:
            continue
        data = _data(event)
        if event.type == "cartridge.installed":
            installed[str(data.get("cartridge_id"))] = event.seq
        elif data.get("session_id") != wanted:
            continue
        elif event.type == "session.started":
            first = installed.get(str(data.get("cartridge_id")), event.seq)
        else:
            last_named = event.seq
            if event.type == "session.ended":
                ended = event.seq
                break
    if first is None and last_named is None:
        raise NothingToExportError(f"{stream_id} holds no event of session {session_id}")
    if first is None:
        raise ExportError(f"session {session_id} has no stored session.started")
    # A session still open ends, for now, at its newest event.
    end = _sealed_through(store, stream_id, ended or last_named or first)
    return stream_id, StreamRange(stream_id, first, end)


_SESSION_TYPES: Final = frozenset({"cartridge.installed", "session.started", "session.ended",
                                   "cores.punched"})  # fmt: skip


def _period_range(store: EventStore, scope: Scope) -> StreamRange:
    """The device's events received within the period (its whole stream without one),
    through the first seal at or after the last of them."""
    assert scope.device_id is not None  # noqa: S101 - a device scope names its device
    stream_id = device_stream(scope.device_id)
    start, stop = _instant(scope.from_time), _instant(scope.to_time)
    first = last = None
    for event in _events(store, stream_id, 1, None):
        if start is not None and event.received_at < start:
            continue
        if stop is not None and event.received_at > stop:
            break
        first = event.seq if first is None else first
        last = event.seq
    if first is None or last is None:
        raise NothingToExportError(f"{scope.device_id} has no stored event in the period")
    return StreamRange(stream_id, first, _sealed_through(store, stream_id, last))


def _registry_range(store: EventStore, device_id: str) -> list[StreamRange]:
    """The device's registry stream, whole: a revocation left out would go unseen."""
    stream_id = registry_stream(device_id)
    head = store.head(stream_id)
    return [] if head is None else [StreamRange(stream_id, 1, head.seq)]


def _sealed_through(store: EventStore, stream_id: str, seq: int) -> int:
    """The seq of the first seal at or after ``seq``; ``seq`` itself when none is (an
    unsigned device, or events nothing seals: the verifier then says so)."""
    seals = store.read_seals(stream_id, seq, limit=1)
    return seals[0].seq if seals else seq


def _check_covered(merkle_log: MerkleLog, stream: StreamRange, size: int) -> None:
    # Leaf indexes grow along a stream: the last event covered means all are.
    try:
        merkle_log.inclusion(stream.stream_id, stream.last_seq, size)
    except NotInLogError:
        raise ExportError(
            f"{stream.stream_id} seq {stream.last_seq} is not covered by the latest "
            f"checkpoint (size {size}): wait for the log to catch up and sign a newer "
            "checkpoint, then export again"
        ) from None


def _check_nothing_lost(
    store: EventStore, merkle_log: MerkleLog, stream_id: str, size: int
) -> None:
    """Refuse a stream the store holds less of than the log: events logged and then
    deleted (the log keeps their hashes).  A bundle of what is left would verify, as
    a range stated short does (docs/evidence-bundle.md §4)."""
    with merkle_log.engine.connect() as connection:
        logged = connection.execute(
            select(func.max(log_leaves.c.seq)).where(
                log_leaves.c.stream_id == stream_id, log_leaves.c.leaf_index < size
            )
        ).scalar()
    head = store.head(stream_id)
    stored = 0 if head is None else head.seq
    if logged is not None and stored < int(logged):
        raise ExportError(
            f"{stream_id} seq {stored + 1}–{logged}: logged under the checkpoint of size "
            f"{size} but no longer stored: events were deleted from the store"
        )


def _witness(
    merkle_log: MerkleLog, verifier: Verifier, latest: StoredCheckpoint, source: str, note: str
) -> WitnessEvidence:
    checkpoint = _check_signed(verifier, note, f"the witness checkpoint {source}")
    if checkpoint.origin != verifier.name:
        raise ExportError(f"the witness checkpoint {source} is of log {checkpoint.origin!r}")
    if checkpoint.size > latest.size:
        raise ExportError(
            f"the witness checkpoint {source} (size {checkpoint.size}) is larger than the "
            f"log's latest (size {latest.size}): export again once the log has caught up"
        )
    return WitnessEvidence(note, merkle_log.consistency(checkpoint.size, latest.size))


def _check_signed(verifier: Verifier, note: str, what: str) -> Checkpoint:
    try:
        return Checkpoint.parse(verifier.verify(note))
    except NoteError as error:
        raise ExportError(f"{what} is not signed by the platform's log key: {error}") from None


# -- streaming to a reader -----------------------------------------------------------


class _AbandonedError(Exception):
    """The reader went away: the writer stops."""


def bundle_chunks(
    write: Callable[[BinaryIO], object], chunk_size: int = 64 * 1024, depth: int = 8
) -> Iterator[bytes]:
    """The bytes ``write`` writes to its file, as chunks for an HTTP response.

    ``write_bundle`` pushes to a file; a response pulls.  ``write`` runs on a thread
    feeding a bounded queue, so at most ``depth`` chunks wait in memory; a reader that
    stops (a client gone) stops the writer.  A failure while writing ends the chunks
    early: the bundle then lacks its end line, which a verifier reports as cut short.
    """
    chunks: queue.Queue[bytes | None] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: bytes | None) -> None:
        while not stop.is_set():
            try:
                chunks.put(item, timeout=0.5)
            except queue.Full:
                continue
            return
        raise _AbandonedError

    class _Sink:
        def __init__(self) -> None:
            self.buffer = bytearray()

        def write(self, data: bytes) -> int:
            self.buffer += data
            if len(self.buffer) >= chunk_size:
                put(bytes(self.buffer))
                self.buffer.clear()
            return len(data)

    def run() -> None:
        sink = _Sink()
        try:
            write(cast(BinaryIO, sink))
            put(bytes(sink.buffer))
        except _AbandonedError:
            return
        except Exception:
            log.exception("the evidence bundle could not be written whole")
        with contextlib.suppress(_AbandonedError):
            put(None)

    writer = threading.Thread(target=run, name="evidence-bundle", daemon=True)
    writer.start()
    try:
        while (chunk := chunks.get()) is not None:
            yield chunk
    finally:
        stop.set()
        writer.join()


# -- cursors -------------------------------------------------------------------------


def _events(
    store: EventStore, stream_id: str, first_seq: int, last_seq: int | None
) -> Iterator[StoredEvent]:
    """A stream's events in seq order, a page at a time."""
    seq = first_seq
    while True:
        page = store.read_stream(stream_id, seq, last_seq, PAGE)
        yield from page
        if len(page) < PAGE:
            return
        seq = page[-1].seq + 1


def _logged_events(
    store: EventStore, merkle_log: MerkleLog, stream: StreamRange, size: int
) -> Iterator[LoggedEvent]:
    events = _events(store, stream.stream_id, stream.first_seq, stream.last_seq)
    proofs = merkle_log.inclusions(stream.stream_id, stream.first_seq, stream.last_seq, size)
    for event in events:
        seq, proof = next(proofs, (None, None))
        if seq != event.seq or proof is None:
            # The plan found the stream's last event covered; a leaf gone since is a
            # log changed under the export (a rebuild): the bundle cannot be whole.
            raise ExportError(
                f"{stream.stream_id} seq {event.seq} is not in the log of size {size}: "
                "the log changed while exporting; export again"
            )
        # The store's hash, not the leaf's: the verifier hashes the bytes and proves
        # that hash in the log, so bytes changed after logging cannot pass.
        yield LoggedEvent(event.body, event.hash, proof.leaf_index, proof.path)


def _seals(store: EventStore, stream: StreamRange) -> Iterator[StreamSeal]:
    seq = stream.first_seq
    while True:
        page = store.read_seals(stream.stream_id, seq, PAGE)
        for seal in page:
            if seal.seq > stream.last_seq:
                return
            yield StreamSeal(seal.seq, seal.key_id, seal.sig)
        if len(page) < PAGE:
            return
        seq = page[-1].seq + 1


def _data(event: StoredEvent) -> dict[str, object]:
    data = orjson.loads(event.body).get("data")
    return data if isinstance(data, dict) else {}


def _instant(text: str | None) -> datetime | None:
    """An RFC 3339 time; one without an offset is taken as UTC."""
    if text is None:
        return None
    try:
        found = datetime.fromisoformat(text)
    except ValueError:
        raise ExportError(f"{text!r} is not an RFC 3339 time") from None
    return found if found.tzinfo else found.replace(tzinfo=UTC)
