"""``coreline verify``: recompute stored hash chains from the stored bytes.

One stream at a time, read in chunks of ``READ_CHUNK`` events, so memory stays
flat however large the store: what is held per stream is the running
``ChainAudit`` (a few findings and counters), and across streams only their names.
Events appended while a stream is being read are simply verified too, if they land
ahead of the reading position; a gap that the gateway is still waiting to have
resent shows as INCOMPLETE, which is what it is until the resend arrives.

After each device stream's chain, its seal coverage (DESIGN §4.1): ``signed through
seq N``, ``unsigned``, or ``SEAL BROKEN …``, which fails the verification.
"""

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Final, Protocol
from uuid import UUID

from schemas import ChainStatus, is_device_stream
from schemas.fields import DEVICE_ID_PATTERN
from schemas.streams import device_stream
from services.audit.chain_audit import ChainAudit, audit_record, body_names_session
from services.audit.report import Tally, session_line, stream_lines, summary_line
from services.audit.seal_coverage import SealCoverage, seal_coverage
from services.eventstore.keyrings import load_keyring
from services.eventstore.ports import StoredEvent, StoredSeal

READ_CHUNK: Final = 1000


class StreamReader(Protocol):
    """The part of ``services.eventstore.EventStore`` a chain audit reads."""

    def stream_ids(self) -> list[str]: ...

    def read_stream(
        self, stream_id: str, from_seq: int = 1, to_seq: int | None = None, limit: int | None = None
    ) -> list[StoredEvent]: ...


class SealedStreamReader(StreamReader, Protocol):
    """What ``verify`` reads: the streams and the seals stored beside them."""

    def read_seals(self, stream_id: str, from_seq: int = 1, limit: int = 0) -> list[StoredSeal]: ...


class VerifyUsageError(Exception):
    """``coreline verify`` was asked for something it cannot verify."""


@dataclass(frozen=True, slots=True)
class AllStreams:
    """Every stored stream, device and platform alike."""


@dataclass(frozen=True, slots=True)
class DeviceTarget:
    device_id: str


@dataclass(frozen=True, slots=True)
class SessionTarget:
    session_id: UUID


VerifyTarget = AllStreams | DeviceTarget | SessionTarget


def parse_target(device: str | None, session: str | None, all_streams: bool) -> VerifyTarget:
    """The one thing the command line names; raises ``VerifyUsageError`` otherwise."""
    if [device is not None, session is not None, all_streams].count(True) != 1:
        raise VerifyUsageError("name what to verify: one of --device ID, --session ID or --all")
    if device is not None:
        if re.fullmatch(DEVICE_ID_PATTERN, device) is None:
            raise VerifyUsageError(f"--device {device!r}: use a device id, e.g. HP-000123")
        return DeviceTarget(device)
    if session is not None:
        try:
            return SessionTarget(UUID(session))
        except ValueError:
            raise VerifyUsageError(f"--session {session!r}: a session id is a UUID") from None
    return AllStreams()


def verify(store: SealedStreamReader, target: VerifyTarget, emit: Callable[[str], None]) -> bool:
    """Verify what ``target`` names, ``emit`` the report line by line, and say whether
    everything verified.  Raises ``VerifyUsageError`` when there is nothing stored to
    verify for a device or session."""
    match target:
        case AllStreams():
            return _verify_streams(store, store.stream_ids(), emit)
        case DeviceTarget(device_id):
            stream_id = device_stream(device_id)
            if not store.read_stream(stream_id, limit=1):
                raise VerifyUsageError(f"no events are stored for device {device_id}")
            return _verify_streams(store, [stream_id], emit)
        case SessionTarget(session_id):
            return _verify_session(store, session_id, emit)


def audit_stream(
    store: StreamReader, stream_id: str, session_id: UUID | None = None, chunk: int = READ_CHUNK
) -> ChainAudit:
    """The audit of one whole stream, read ``chunk`` events at a time."""
    return _audit_and_hashes(store, stream_id, session_id, chunk, frozenset())[0]


def audit_seals(
    store: SealedStreamReader, stream_id: str, session_id: UUID | None = None
) -> tuple[ChainAudit, SealCoverage]:
    """A device stream's chain audit and its seal coverage, in one read of the stream."""
    seals = store.read_seals(stream_id)
    wanted = frozenset(seal.seq for seal in seals)
    audit, hashes = _audit_and_hashes(store, stream_id, session_id, READ_CHUNK, wanted)
    return audit, seal_coverage(stream_id, load_keyring(store, stream_id), seals, hashes)


def _audit_and_hashes(
    store: StreamReader,
    stream_id: str,
    session_id: UUID | None,
    chunk: int,
    wanted: frozenset[int],
) -> tuple[ChainAudit, dict[int, str]]:
    """The audit, and the stored hashes of the ``wanted`` seqs collected on the way."""
    audit = ChainAudit(stream_id, session_id)
    hashes: dict[int, str] = {}
    for batch in _batches(store, stream_id, chunk):
        for record in batch:
            audit = audit_record(audit, record)
            if record.seq in wanted:
                hashes[record.seq] = record.hash
    return audit, hashes


def find_session_stream(
    store: StreamReader, session_id: UUID, chunk: int = READ_CHUNK
) -> str | None:
    """The device stream holding ``session_id``'s events.

    Nothing indexes sessions in the store, so this reads every device stream until
    one names the session: a full scan at worst, acceptable for an audit command.
    """
    for stream_id in store.stream_ids():
        if not is_device_stream(stream_id):
            continue
        for batch in _batches(store, stream_id, chunk):
            if any(body_names_session(record.body, session_id) for record in batch):
                return stream_id
    return None


def _verify_streams(
    store: SealedStreamReader, stream_ids: list[str], emit: Callable[[str], None]
) -> bool:
    width = max((len(stream_id) for stream_id in stream_ids), default=0)
    tally = Tally()
    for stream_id in stream_ids:
        if not is_device_stream(stream_id):
            audit = audit_stream(store, stream_id)
            emit_all(stream_lines(audit, width), emit)
            tally = tally.counted(audit)
            continue
        audit, coverage = audit_seals(store, stream_id)
        emit_all(stream_lines(audit, width), emit)
        emit(coverage.line(stream_id, width))
        tally = tally.counted(audit, coverage)
    emit(summary_line(tally))
    return tally.all_verified


def _verify_session(
    store: SealedStreamReader, session_id: UUID, emit: Callable[[str], None]
) -> bool:
    """The session's device stream is reported whole; the answer is the session's."""
    stream_id = find_session_stream(store, session_id)
    if stream_id is None:
        raise VerifyUsageError(f"no stored event belongs to session {session_id}")
    audit, coverage = audit_seals(store, stream_id, session_id)
    emit_all(stream_lines(audit, len(stream_id)), emit)
    emit(coverage.line(stream_id, len(stream_id)))
    verdict = audit.session_verdict()
    emit(session_line(verdict, stream_id))
    return verdict.status is ChainStatus.VERIFIED and coverage.failure is None


def emit_all(lines: list[str], emit: Callable[[str], None]) -> None:
    for line in lines:
        emit(line)


def _batches(store: StreamReader, stream_id: str, chunk: int) -> Iterator[list[StoredEvent]]:
    from_seq = 1
    while batch := store.read_stream(stream_id, from_seq=from_seq, limit=chunk):
        yield batch
        if len(batch) < chunk:
            return
        from_seq = batch[-1].seq + 1
