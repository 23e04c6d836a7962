"""A test-side transparency log and evidence bundles built with it.

``MerkleLog`` is an RFC 9162 tree over event hashes with its audit paths and
consistency proofs, and ``LogSigner`` signs C2SP checkpoint notes with a test key:
written here from the RFCs, independently of the verifier, and checked against the
sealed vector's ``tree`` root.  ``vector_bundle`` turns the protocol vectors into a
bundle through the platform's writer (``services.evidence``).
"""

import base64
import hashlib
import io
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from schemas import canonical_body, event_hash
from services.evidence import (
    LogEvidence,
    LoggedEvent,
    Scope,
    StreamEvidence,
    StreamSeal,
    WitnessEvidence,
    write_bundle,
)

ORIGIN = "coreline/log/v1"
VECTORS_DIR = Path(__file__).resolve().parents[1] / "protocol-vectors"
SEALED_VECTOR = VECTORS_DIR / "HP-000014.sealed.json"


def _sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


class MerkleLog:
    """Every level of an RFC 9162 tree, kept whole (fine for tests and the bench)."""

    def __init__(self, event_hashes: Iterable[bytes] = ()) -> None:
        self._levels: list[list[bytes]] = [[]]
        self._dirty = True
        for raw in event_hashes:
            self.append(raw)

    def append(self, raw_event_hash: bytes) -> int:
        self._levels[0].append(_sha(b"\x00" + raw_event_hash))
        self._dirty = True
        return len(self._levels[0]) - 1

    @property
    def size(self) -> int:
        return len(self._levels[0])

    def _build(self) -> list[list[bytes]]:
        if self._dirty:
            levels = [self._levels[0]]
            while len(levels[-1]) > 1:
                below = levels[-1]
                above = [
                    _sha(b"\x01" + below[i] + below[i + 1]) for i in range(0, len(below) - 1, 2)
                ]
                if len(below) % 2:
                    above.append(below[-1])
                levels.append(above)
            self._levels = levels
            self._dirty = False
        return self._levels

    def root(self, size: int | None = None) -> bytes:
        size = self.size if size is None else size
        return self._mth(0, size)

    def _mth(self, low: int, high: int) -> bytes:
        width = high - low
        if width == 0:
            return _sha(b"")
        levels = self._build()
        height = width.bit_length() - 1
        if width == 1 << height and low % width == 0:
            return levels[height][low >> height]
        split = 1 << ((width - 1).bit_length() - 1)
        return _sha(b"\x01" + self._mth(low, low + split) + self._mth(low + split, high))

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """PATH(m, D[n]) of RFC 9162 §2.1.3.1."""
        return self._path(index, 0, self.size if size is None else size)

    def audit_path(self, index: int) -> list[bytes]:
        """The same path against the whole tree, read off the levels: each level's
        sibling, where there is one (an odd last node is carried up unpaired)."""
        path = []
        for level in self._build()[:-1]:
            sibling = index ^ 1
            if sibling < len(level):
                path.append(level[sibling])
            index >>= 1
        return path

    def _path(self, index: int, low: int, high: int) -> list[bytes]:
        width = high - low
        if width <= 1:
            return []
        split = 1 << ((width - 1).bit_length() - 1)
        if index - low < split:
            return [*self._path(index, low, low + split), self._mth(low + split, high)]
        return [*self._path(index, low + split, high), self._mth(low, low + split)]

    def consistency_proof(self, first: int, second: int | None = None) -> list[bytes]:
        """PROOF(m, D[n]) of RFC 9162 §2.1.4.1."""
        second = self.size if second is None else second
        if first in (0, second):
            return []
        return self._subproof(first, 0, second, complete=True)

    def _subproof(self, m: int, low: int, high: int, *, complete: bool) -> list[bytes]:
        width = high - low
        if m == width:
            return [] if complete else [self._mth(low, high)]
        split = 1 << ((width - 1).bit_length() - 1)
        if m <= split:
            return [
                *self._subproof(m, low, low + split, complete=complete),
                self._mth(low + split, high),
            ]
        return [
            *self._subproof(m - split, low + split, high, complete=False),
            self._mth(low, low + split),
        ]


@dataclass(frozen=True)
class LogSigner:
    """Signs checkpoints as C2SP signed notes with an Ed25519 key."""

    name: str = ORIGIN
    key: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)

    @property
    def raw_public_key(self) -> bytes:
        return self.key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    @property
    def key_id(self) -> bytes:
        return _sha(self.name.encode() + b"\n\x01" + self.raw_public_key)[:4]

    @property
    def verifier_key(self) -> str:
        encoded = base64.b64encode(b"\x01" + self.raw_public_key).decode()
        return f"{self.name}+{self.key_id.hex()}+{encoded}"

    def checkpoint(self, log: MerkleLog, size: int | None = None, origin: str = ORIGIN) -> str:
        size = log.size if size is None else size
        text = f"{origin}\n{size}\n{base64.b64encode(log.root(size)).decode()}\n"
        signature = base64.b64encode(self.key_id + self.key.sign(text.encode())).decode()
        return f"{text}\n\u2014 {self.name} {signature}\n"


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def sealed_vector() -> dict[str, Any]:
    vector: dict[str, Any] = json.loads(SEALED_VECTOR.read_text())
    return vector


def stream_vector(device_id: str) -> dict[str, Any]:
    vector: dict[str, Any] = json.loads((VECTORS_DIR / f"{device_id}.stream.json").read_text())
    return vector


def vector_events(vector: dict[str, Any]) -> list[dict[str, Any]]:
    """A vector's events with their hashes, in seq order."""
    if "batches" in vector:
        return [event for batch in vector["batches"] for event in batch["events"]]
    events: list[dict[str, Any]] = vector["events"]
    return events


def vector_seals(vector: dict[str, Any]) -> list[StreamSeal]:
    return [
        StreamSeal(
            seq=batch["seal"]["seq"], key_id=batch["seal"]["key_id"], sig=batch["seal"]["sig"]
        )
        for batch in vector.get("batches", [])
        if "seal" in batch
    ]


def chain(stream_device: str, items: Sequence[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    """Platform events ``(type, data)`` of ``stream_device``'s registry, hash-chained."""
    events: list[dict[str, Any]] = []
    prev = "0" * 64
    for seq, (kind, data) in enumerate(items, 1):
        event = {
            "event_id": f"00000000-0000-4000-8000-{seq:012d}",
            "device_id": stream_device,
            "seq": seq,
            "type": kind,
            "occurred_at": f"2026-11-24T08:{seq:02d}:00.000Z",
            "schema_version": 1,
            "data": data,
            "prev_hash": prev,
        }
        event["hash"] = prev = event_hash(event)
        events.append(event)
    return events


def key_registered(key_id: str, public_key: str) -> tuple[str, dict[str, Any]]:
    return "device.key_registered", {
        "key_id": key_id,
        "public_key": public_key,
        "algorithm": "ed25519",
    }


def key_revoked(key_id: str) -> tuple[str, dict[str, Any]]:
    return "device.key_revoked", {"key_id": key_id, "reason": "compromised"}


@dataclass
class BundleSource:
    """Streams of whole events (with ``hash``) and seals, logged in the order given,
    ready to be written as a bundle."""

    streams: list[tuple[str, list[dict[str, Any]], list[StreamSeal]]]
    signer: LogSigner = field(default_factory=LogSigner)
    log: MerkleLog = field(default_factory=MerkleLog)
    index_of: dict[tuple[str, int], int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for stream_id, events, _ in self.streams:
            for event in events:
                self.index_of[stream_id, event["seq"]] = self.log.append(
                    bytes.fromhex(event["hash"])
                )

    def write(
        self,
        out: io.BufferedIOBase | io.BytesIO,
        *,
        witnesses: Sequence[int] = (),
        checkpoint: str | None = None,
        scope: Scope | None = None,
    ) -> None:
        evidence = [
            StreamEvidence(
                stream_id=stream_id,
                first_seq=events[0]["seq"],
                last_seq=events[-1]["seq"],
                events=[self._logged(stream_id, event) for event in events],
                seals=seals,
            )
            for stream_id, events, seals in self.streams
        ]
        write_bundle(
            out,  # type: ignore[arg-type]
            scope=scope or Scope(kind="device", device_id=self.streams[-1][0]),
            log=LogEvidence(
                origin=ORIGIN,
                verifier_key=self.signer.verifier_key,
                checkpoint=checkpoint or self.signer.checkpoint(self.log),
            ),
            streams=evidence,
            witnesses=[
                WitnessEvidence(
                    self.signer.checkpoint(self.log, size), self.log.consistency_proof(size)
                )
                for size in witnesses
            ],
        )

    def _logged(self, stream_id: str, event: dict[str, Any]) -> LoggedEvent:
        index = self.index_of[stream_id, event["seq"]]
        return LoggedEvent(
            body=canonical_body(event),
            hash=event["hash"],
            log_index=index,
            inclusion_proof=self.log.inclusion_proof(index),
        )

    def bundle_bytes(self, **options: Any) -> bytes:
        buffer = io.BytesIO()
        self.write(buffer, **options)
        return buffer.getvalue()


def sealed_source(*, revoked: bool = False, others: Sequence[dict[str, Any]] = ()) -> BundleSource:
    """HP-000014's sealed stream after its registry (key registered, and revoked
    right after when ``revoked``), logged after the events of ``others`` vectors."""
    vector = sealed_vector()
    device = vector["device_id"]
    registry: list[tuple[str, dict[str, Any]]] = [
        ("device.registered", {"model": "CL-2", "registered_by": "user:qa"})
    ]
    registry.append(key_registered(vector["key_id"], vector["public_key"]))
    if revoked:
        registry.append(key_revoked(vector["key_id"]))
    streams: list[tuple[str, list[dict[str, Any]], list[StreamSeal]]] = [
        (other["expected"]["device_id"], vector_events(other), []) for other in others
    ]
    streams.append((f"registry:{device}", chain(device, registry), []))
    streams.append((device, vector_events(vector), vector_seals(vector)))
    return BundleSource(streams=streams)


def write_file(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path
