"""Every check of a bundle, in the order docs/evidence-bundle.md gives them.

``verify_file`` reads the bundle once, a block of lines at a time, keeping only what
the next line needs (the previous event's hash, a few Merkle nodes, each device's
keys and its open session), so memory stays flat however many events the bundle
holds.  It raises ``CheckFailed`` naming the first failure, and reports what passed
through ``emit`` as it goes.
"""

import gc
import os
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from coreline_verify.bundle import PreparedEvent, read_line
from coreline_verify.errors import BundleUnreadable, CheckFailed, NotCanonicalError
from coreline_verify.facts import SessionFacts, SessionFold
from coreline_verify.header import Witness, check_header
from coreline_verify.merkle import InclusionChecker
from coreline_verify.note import Checkpoint, VerifierKey
from coreline_verify.parallel import (
    PUNCHES,
    EventRun,
    KnownKeys,
    Prepared,
    prepare_line,
    prepared_here,
    prepared_in_workers,
)
from coreline_verify.seals import DeviceKeys, SealError, VerifiedSeal

GENESIS_HASH: Final = "0" * 64
_DEVICE_ID: Final = re.compile(r"[A-Z0-9][A-Z0-9-]{2,63}")
_HEX_HASH: Final = re.compile(r"[0-9a-f]{64}")
_REGISTRY_PREFIX: Final = "registry:"
_KEY_REGISTERED: Final = "device.key_registered"
_KEY_REVOKED: Final = "device.key_revoked"
_PARALLEL_FROM_BYTES: Final = 16 << 20


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a bundle that verified holds."""

    checkpoint: Checkpoint
    streams: int
    events: int
    witnessed: int
    sessions: int
    """How many sessions were reported (each through ``emit`` as it ended)."""


@dataclass(slots=True)
class _Stream:
    stream_id: str
    first_seq: int
    last_seq: int
    device_id: str | None
    """Set for a device's own stream: the one seals and sessions apply to."""
    next_seq: int
    prev_hash: str | None = None
    last_hash: str = ""
    last_log_index: int = -1
    sealed_through: int = 0
    seal_keys: set[str] = field(default_factory=set)
    events: int = 0
    fold: SessionFold | None = None


class _Verification:
    def __init__(
        self,
        key: VerifierKey | None,
        witnesses: Sequence[Witness],
        require_seals: bool,
        emit: Callable[[str], None],
    ) -> None:
        self._key_override = key
        self._witnesses = witnesses
        self._require_seals = require_seals
        self._emit = emit
        self._keys: dict[str, DeviceKeys] = {}
        self._sessions = 0
        self._stream: _Stream | None = None
        self._streams = 0
        self._events = 0
        self._checkpoint: Checkpoint | None = None
        self._witnessed = 0

    def header(self, record: dict[str, Any]) -> InclusionChecker:
        checked = check_header(record, self._key_override, self._witnesses)
        self._checkpoint = checked.checkpoint
        self._witnessed = checked.witnessed
        return InclusionChecker(checked.checkpoint.size, checked.checkpoint.root)

    # -- streams -------------------------------------------------------------------

    def stream(self, header: Any) -> None:
        self._close_stream()
        if not isinstance(header, dict):
            raise BundleUnreadable("a stream line holds an object")
        stream_id, first, last = header.get("id"), header.get("first_seq"), header.get("last_seq")
        if not isinstance(stream_id, str) or not isinstance(first, int):
            raise BundleUnreadable("a stream names its id and first_seq")
        if not isinstance(last, int) or not 1 <= first <= last:
            raise BundleUnreadable(f"{stream_id}: first_seq and last_seq are a range")
        if stream_id.startswith(_REGISTRY_PREFIX) and first != 1:
            # Its keys are read from seq 1 on: a registration left out is a seal that
            # fails, but a revocation left out would go unseen.
            raise CheckFailed(f"{stream_id}: a registry stream is given whole, from seq 1")
        device_id = stream_id if _DEVICE_ID.fullmatch(stream_id) else None
        stream = _Stream(stream_id, first, last, device_id, next_seq=first)
        if device_id is not None:
            stream.fold = SessionFold(device_id, self._session_done)
        self._stream = stream
        self._streams += 1

    def _session_done(self, facts: SessionFacts) -> None:
        self._sessions += 1
        self._emit(facts.describe())

    def event(self, event: PreparedEvent) -> None:
        stream = self._stream
        if stream is None:
            raise BundleUnreadable("an event line comes before any stream line")
        seq = stream.next_seq
        if seq > stream.last_seq:
            raise CheckFailed(
                f"{stream.stream_id} seq {seq}: beyond the stream's stated last_seq "
                f"{stream.last_seq}"
            )
        if event.bytes_failure is not None:
            raise CheckFailed(f"{stream.stream_id} seq {seq}: {event.bytes_failure}")
        # The common case costs a handful of comparisons; messages are built only
        # on the way out.
        expected = GENESIS_HASH if seq == 1 else stream.prev_hash
        if (
            event.seq != seq
            or (stream.device_id is not None and event.device_id != stream.device_id)
            or event.log_index <= stream.last_log_index
            # A range's first event (above seq 1) has nothing to link to: its
            # prev_hash need only be a hash.  Any other must be the hash expected.
            or (
                event.prev_hash != expected
                if expected is not None
                else type(event.prev_hash) is not str or not _HEX_HASH.fullmatch(event.prev_hash)
            )
        ):
            raise CheckFailed(self._link_failure(stream, seq, event))
        if event.inclusion_failure is not None:
            raise CheckFailed(f"{stream.stream_id} seq {seq}: {event.inclusion_failure}")
        stream.prev_hash = stream.last_hash = event.event_hash
        stream.last_log_index = event.log_index
        stream.next_seq = seq + 1
        stream.events += 1
        self._events += 1
        if event.data is not None:
            self._fold(stream, event.type, seq, event.data, event.log_index)

    def run(self, run: EventRun) -> None:
        """Events a worker checked among themselves: link the first, fold the rest."""
        self.event(run.first)
        stream = self._stream
        assert stream is not None  # noqa: S101 - event() holds to it
        beyond = run.last_seq > stream.last_seq
        for kind, seq, data, log_index in run.folds:
            if seq > stream.last_seq:
                break
            self._fold(stream, kind, seq, data, log_index)
        if beyond:
            raise CheckFailed(
                f"{stream.stream_id} seq {stream.last_seq + 1}: beyond the stream's stated "
                f"last_seq {stream.last_seq}"
            )
        stream.prev_hash = stream.last_hash = run.last_hash
        stream.last_log_index = run.last_log_index
        stream.next_seq = run.last_seq + 1
        stream.events += run.events - 1
        self._events += run.events - 1

    def _fold(self, stream: _Stream, kind: Any, seq: int, data: Any, log_index: int) -> None:
        try:
            if stream.fold is not None:
                if kind == PUNCHES:
                    stream.fold.apply_punches(*data)
                else:
                    stream.fold.apply(kind, seq, data)
            elif stream.stream_id.startswith(_REGISTRY_PREFIX):
                device = stream.stream_id[len(_REGISTRY_PREFIX) :]
                self._registry(device, kind, data, log_index)
        except SealError as error:
            raise CheckFailed(f"{stream.stream_id} seq {seq}: {error}") from error
        except (KeyError, TypeError, ZeroDivisionError) as error:
            raise CheckFailed(
                f"{stream.stream_id} seq {seq}: the event's data is not of its type ({error!r})"
            ) from error

    @staticmethod
    def _link_failure(stream: _Stream, seq: int, event: PreparedEvent) -> str:
        where = f"{stream.stream_id} seq {seq}"
        if event.seq != seq:
            return f"{where}: the event says seq {event.seq} (an event is missing or moved)"
        expected = GENESIS_HASH if seq == 1 else stream.prev_hash
        if expected is not None and event.prev_hash != expected:
            return f"{where}: prev_hash does not link to seq {seq - 1}"
        if stream.device_id is not None and event.device_id != stream.device_id:
            return f"{where}: the event is of device {event.device_id}"
        if event.log_index <= stream.last_log_index:
            return f"{where}: log index {event.log_index} is not after seq {seq - 1}'s"
        return f"{where}: prev_hash is not a hash"

    def _registry(self, device_id: str, kind: Any, data: Any, log_index: int) -> None:
        if kind == _KEY_REGISTERED:
            self._keys.setdefault(device_id, DeviceKeys()).register(data)
        elif kind == _KEY_REVOKED:
            self._keys.setdefault(device_id, DeviceKeys()).revoke(data, log_index)

    def seal(self, seal: Any, verified: VerifiedSeal | None = None) -> None:
        stream = self._stream
        if stream is None or stream.device_id is None or stream.events == 0:
            raise CheckFailed("a seal line does not follow an event of a device's stream")
        seq = stream.next_seq - 1
        where = f"{stream.stream_id} seq {seq}"
        if not isinstance(seal, dict) or seal.get("seq") != seq:
            claimed = seal.get("seq") if isinstance(seal, dict) else None
            raise CheckFailed(f"{where}: a seal for seq {claimed} follows this event")
        keys = self._keys.get(stream.device_id, DeviceKeys())
        try:
            key_id = keys.check(
                seal, stream.device_id, stream.last_hash, stream.last_log_index, verified
            )
        except SealError as error:
            raise CheckFailed(f"{where}: {error}") from error
        stream.sealed_through = seq
        stream.seal_keys.add(key_id)

    def _close_stream(self) -> None:
        stream = self._stream
        if stream is None:
            return
        self._stream = None
        held = stream.next_seq - 1
        if held != stream.last_seq:
            raise CheckFailed(
                f"{stream.stream_id}: the bundle states seq {stream.first_seq}–"
                f"{stream.last_seq} but holds events through seq {held}"
            )
        if stream.fold is not None:
            stream.fold.finish()
        summary = f"{stream.stream_id} seq {stream.first_seq}–{stream.last_seq}: "
        summary += f"{stream.events} events, bytes, hashes, links and inclusion verified"
        if stream.first_seq > 1:
            summary += f" (seq {stream.first_seq}'s link to the events before it is not checked)"
        if stream.device_id is not None:
            summary += "; " + self._seal_summary(stream)
        self._emit(summary)

    def _seal_summary(self, stream: _Stream) -> str:
        device = stream.device_id
        keys = self._keys.get(device or "")
        if keys is None or not keys.registered:
            if self._require_seals:
                raise CheckFailed(f"{device}: unsigned (the registry registers no seal key)")
            return "unsigned (the registry registers no seal key)"
        if stream.sealed_through < stream.last_seq:
            raise CheckFailed(
                f"{device} seq {stream.sealed_through + 1}–{stream.last_seq}: "
                "no seal covers these events"
            )
        return (
            f"sealed through seq {stream.sealed_through} by {', '.join(sorted(stream.seal_keys))}"
        )

    def known_keys(self) -> KnownKeys:
        """A copy of each device's registered keys, as raw bytes, read so far."""
        return {device: dict(keys.raw) for device, keys in self._keys.items()}

    def line(self, record: dict[str, Any]) -> Verdict | None:
        """A line other than an event's; the verdict once it is the end line."""
        if "seal" in record:
            self.seal(record["seal"])
        elif "stream" in record:
            self.stream(record["stream"])
        elif "end" in record:
            return self.end(record["end"])
        else:
            raise BundleUnreadable(f"unknown line kind {sorted(record)}")
        return None

    def end(self, record: Any) -> Verdict:
        self._close_stream()
        if not isinstance(record, dict):
            raise BundleUnreadable("the end line holds an object")
        if record.get("streams") != self._streams or record.get("events") != self._events:
            raise CheckFailed(
                f"the bundle ends stating {record.get('streams')} streams and "
                f"{record.get('events')} events, but holds {self._streams} and {self._events}"
            )
        assert self._checkpoint is not None  # noqa: S101 - the header came first
        return Verdict(
            checkpoint=self._checkpoint,
            streams=self._streams,
            events=self._events,
            witnessed=self._witnessed,
            sessions=self._sessions,
        )


def verify_lines(
    lines: Iterable[bytes],
    *,
    key: VerifierKey | None = None,
    witnesses: Sequence[Witness] = (),
    require_seals: bool = False,
    emit: Callable[[str], None] = lambda _: None,
) -> Verdict:
    """Verify a bundle given as its lines, in this process; raise ``CheckFailed`` or
    ``BundleUnreadable`` naming the first failure."""
    check = _Verification(key, witnesses, require_seals, emit)
    remaining = iter(lines)
    inclusion = check.header(read_line(next(remaining, b"").rstrip(b"\n")))
    return _verify_items(check, (prepare_line(line.rstrip(b"\n"), inclusion) for line in remaining))


def _verify_items(check: "_Verification", items: Iterator[Prepared]) -> Verdict:
    number = 1  # of the line, to name it if it is unreadable
    try:
        for item in items:
            number += 1
            if type(item) is EventRun:
                check.run(item)
                number += item.events - 1
            elif type(item) is PreparedEvent:
                check.event(item)
            elif type(item) is VerifiedSeal:
                check.seal(item.seal, item)
            elif isinstance(item, BundleUnreadable):
                raise item
            elif (verdict := check.line(read_line(item))) is not None:  # type: ignore[arg-type]
                if next(items, None) is not None:
                    raise BundleUnreadable("lines follow the end line")  # noqa: TRY301
                return verdict
    except (BundleUnreadable, NotCanonicalError) as error:
        raise BundleUnreadable(f"line {number}: {error}") from error
    raise CheckFailed("the bundle stops before its end line (truncated)")


@contextmanager
def _no_cycle_collection() -> Iterator[None]:
    # Nothing the checks make holds a cycle; reference counting frees it all, and the
    # cycle collector's passes over the young dicts of each event are pure cost.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def verify_file(
    path: Path,
    *,
    key: VerifierKey | None = None,
    witnesses: Sequence[Witness] = (),
    require_seals: bool = False,
    emit: Callable[[str], None] = lambda _: None,
    jobs: int | None = None,
) -> Verdict:
    """Verify the bundle at ``path``, reading it as a stream.  With ``jobs`` > 1
    (by default, for bundles over 16 MB on a machine with more than one core) the
    bytes and proofs of blocks of events, and the signatures of their seals, are
    checked in worker processes while this one follows the links, seals (their keys
    and revocations) and sessions in order."""
    if jobs is None:
        large = path.stat().st_size > _PARALLEL_FROM_BYTES
        jobs = (os.cpu_count() or 1) if large else 1
    check = _Verification(key, witnesses, require_seals, emit)
    with _no_cycle_collection():
        with path.open("rb") as stream:
            header = stream.readline().rstrip(b"\n")
            start = stream.tell()
        if not header:
            raise BundleUnreadable("the bundle is empty")
        inclusion = check.header(read_line(header))
        if jobs <= 1:
            return _verify_items(check, prepared_here(path, start, inclusion, check.known_keys))
        with prepared_in_workers(path, start, inclusion, jobs, check.known_keys) as items:
            return _verify_items(check, items)
