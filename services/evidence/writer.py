"""Streams a ``coreline-evidence/v1`` bundle (JSON Lines) to a binary file object.

Memory stays flat: events, seals and streams are consumed one at a time from the
caller's iterables (cursors over the store, say) and written at once.  Each event's
stored bytes go into its line verbatim, never re-encoded, so the bundle carries the
exact bytes its hash covers.
"""

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import BinaryIO, Final, Literal

FORMAT: Final = "coreline-evidence/v1"
_HASH_BYTES: Final = 32
_HEX_HASH_CHARS: Final = 64


class EvidenceError(ValueError):
    """The caller handed the writer something a bundle cannot hold."""


@dataclass(frozen=True, slots=True)
class Scope:
    """What the bundle was exported for: a session, a device (optionally within a
    period of receive times), or a period across the fleet."""

    kind: Literal["session", "device", "period"]
    session_id: str | None = None
    device_id: str | None = None
    from_time: str | None = None
    to_time: str | None = None

    def as_json(self) -> dict[str, str]:
        named = {
            "kind": self.kind,
            "session_id": self.session_id,
            "device_id": self.device_id,
            "from": self.from_time,
            "to": self.to_time,
        }
        return {key: value for key, value in named.items() if value is not None}


@dataclass(frozen=True, slots=True)
class LogEvidence:
    """The log the bundle's proofs are against: its origin line, the platform's
    verifier key (C2SP vkey text) and a signed checkpoint (C2SP signed note)."""

    origin: str
    verifier_key: str
    checkpoint: str


@dataclass(frozen=True, slots=True)
class WitnessEvidence:
    """A checkpoint someone kept, and the consistency proof from its size to the
    bundle's checkpoint (raw 32-byte hashes, RFC 9162 §2.1.4)."""

    checkpoint: str
    consistency_proof: Sequence[bytes]


@dataclass(frozen=True, slots=True)
class LoggedEvent:
    """One stored event: its bytes (canonical JSON without ``hash``), its stored
    hash, its index in the log and its inclusion proof against the checkpoint."""

    body: bytes
    hash: str
    log_index: int
    inclusion_proof: Sequence[bytes]


@dataclass(frozen=True, slots=True)
class StreamSeal:
    seq: int
    key_id: str
    sig: str


@dataclass(frozen=True, slots=True)
class StreamEvidence:
    """One stream's events from ``first_seq`` through ``last_seq`` in seq order, and
    its seals in seq order (each over one of these events).  A device's registry
    stream must come before the device's own stream, so its keys are known first."""

    stream_id: str
    first_seq: int
    last_seq: int
    events: Iterable[LoggedEvent]
    seals: Iterable[StreamSeal] = field(default=())


@dataclass(frozen=True, slots=True)
class BundleSummary:
    streams: int
    events: int


def _path(nodes: Sequence[bytes]) -> str:
    """A proof as the bundle writes it: the hex of its 32-byte nodes in order,
    concatenated (one string per proof parses several times faster than a list,
    and a verifier decodes only the nodes it hashes)."""
    if any(len(node) != _HASH_BYTES for node in nodes):
        raise EvidenceError("proof hashes are 32 bytes")
    return b"".join(nodes).hex()


def _line(value: Mapping[str, object]) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"


def write_bundle(
    out: BinaryIO,
    *,
    scope: Scope,
    log: LogEvidence,
    streams: Iterable[StreamEvidence],
    witnesses: Sequence[WitnessEvidence] = (),
) -> BundleSummary:
    """Write the whole bundle to ``out``.  Raises ``EvidenceError`` (with the file
    left incomplete, to be discarded) if a stream holds other than it states."""
    header = {
        "format": FORMAT,
        "scope": scope.as_json(),
        "log": {
            "origin": log.origin,
            "verifier_key": log.verifier_key,
            "checkpoint": log.checkpoint,
        },
        "witnesses": [
            {
                "checkpoint": witness.checkpoint,
                "consistency_proof": _path(witness.consistency_proof),
            }
            for witness in witnesses
        ],
    }
    out.write(_line(header))
    stream_count = event_count = 0
    for stream in streams:
        stream_count += 1
        event_count += _write_stream(out, stream)
    out.write(_line({"end": {"streams": stream_count, "events": event_count}}))
    return BundleSummary(streams=stream_count, events=event_count)


def _write_stream(out: BinaryIO, stream: StreamEvidence) -> int:
    stated = {"id": stream.stream_id, "first_seq": stream.first_seq, "last_seq": stream.last_seq}
    out.write(_line({"stream": stated}))
    seals: Iterator[StreamSeal] = iter(stream.seals)
    pending: StreamSeal | None = None
    seq = stream.first_seq - 1
    for event in stream.events:
        seq += 1
        if b"\n" in event.body:
            raise EvidenceError(f"{stream.stream_id} seq {seq}: stored bytes hold a newline")
        if len(event.hash) != _HEX_HASH_CHARS or not event.hash.isalnum():
            raise EvidenceError(f"{stream.stream_id} seq {seq}: {event.hash!r} is not a hash")
        proof = _path(event.inclusion_proof)
        out.write(
            f'{{"log_index":{event.log_index},"hash":"{event.hash}","proof":"{proof}","event":'.encode(
                "ascii"
            )
        )
        out.write(event.body)
        out.write(b"}\n")
        # A seal line goes right after the event it seals: the verifier holds only
        # the latest event's hash.  Seals are pulled one event at a time, lazily.
        while (pending := pending or next(seals, None)) is not None and pending.seq <= seq:
            if pending.seq < seq:
                raise EvidenceError(
                    f"{stream.stream_id}: seal for seq {pending.seq} is out of order"
                )
            out.write(_line({"seal": {"seq": seq, "key_id": pending.key_id, "sig": pending.sig}}))
            pending = None
    if seq != stream.last_seq:
        raise EvidenceError(
            f"{stream.stream_id}: states seq {stream.first_seq}–{stream.last_seq}, "
            f"holds events through {seq}"
        )
    if (pending or next(seals, None)) is not None:
        raise EvidenceError(f"{stream.stream_id}: a seal is for an event the stream lacks")
    return seq - stream.first_seq + 1
