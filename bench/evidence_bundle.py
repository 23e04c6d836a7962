"""The evidence bundle of one handpiece with many events, for ``bench.verify`` and
the verifier's tests: one stream of sessions and punches, sealed every 100 events
with the device's Ed25519 key, behind its registry stream, all in one RFC 9162 log
whose checkpoint is signed, written event by event through the platform's writer
(``services.evidence``)."""

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from coreline_verify import key_id_of, seal_message
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from schemas import GENESIS_HASH, canonical_body
from schemas.canonical import sha256_hex
from services.evidence import (
    LogEvidence,
    LoggedEvent,
    Scope,
    StreamEvidence,
    StreamSeal,
    write_bundle,
)
from tests.support.evidence_log import ORIGIN, LogSigner, MerkleLog, b64url, chain, key_registered

DEVICE = "HP-424242"
SEAL_EVERY = 100
_NAMESPACE = uuid.UUID("5d7c8b1e-2f4a-4e8b-9c1d-3a2b4c5d6e7f")
_PUNCHES_PER_SESSION = 120


def _readings(total: int) -> Iterator[tuple[str, dict[str, Any]]]:
    """Sessions of 120 punches on one cartridge each, until ``total`` events."""
    produced, number = 0, 0
    while True:
        number += 1
        cartridge, session = f"CT-{number:06d}", str(uuid.uuid5(_NAMESPACE, f"s{number}"))
        story: list[tuple[str, dict[str, Any]]] = [
            ("cartridge.installed", {"cartridge_id": cartridge, "lot": "L2611A", "needles": 3,
             "needle_gauge": 22, "core_diameter_mm": 0.5, "rated_actuations": 5000}),
            ("session.started", {"session_id": session, "treatment_area": "lower_face",
             "area_cm2": 30.0, "operator_ref": "op-7f3a", "cartridge_id": cartridge}),
        ]  # fmt: skip
        for punch in range(_PUNCHES_PER_SESSION):
            window = f"2026-11-24T09:{punch // 60:02d}:{punch % 60:02d}"
            story.append(("cores.punched", {
                "session_id": session, "cartridge_id": cartridge, "actuations": 20, "cores": 60,
                "depth_mm": 1.5, "window_start": f"{window}.000Z", "window_end": f"{window}.750Z",
            }))  # fmt: skip
        story.append(("session.ended", {"session_id": session, "actuations_total": 2400,
                      "cores_total": 7200, "duration_s": 1800, "reason": "completed"}))  # fmt: skip
        story.append(("cartridge.removed", {"cartridge_id": cartridge, "actuations_total": 2400,
                      "reason": "session_end"}))  # fmt: skip
        for reading in story:
            yield reading
            produced += 1
            if produced == total:
                return


def _stream(total: int) -> Iterator[tuple[bytes, str]]:
    """The device's events as (canonical body, hash), chained from seq 1."""
    prev_hash = GENESIS_HASH
    for seq, (kind, data) in enumerate(_readings(total), 1):
        body = canonical_body({
            "event_id": str(uuid.uuid5(_NAMESPACE, str(seq))), "device_id": DEVICE, "seq": seq,
            "type": kind, "occurred_at": "2026-11-24T09:00:00.000Z", "schema_version": 1,
            "data": data, "prev_hash": prev_hash,
        })  # fmt: skip
        prev_hash = sha256_hex(body)
        yield body, prev_hash


def build_bundle(path: Path, total: int) -> None:
    device_key = Ed25519PrivateKey.generate()
    raw = device_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    key_id = key_id_of(raw)
    registry = chain(DEVICE, [key_registered(key_id, b64url(raw))])
    log = MerkleLog(bytes.fromhex(event["hash"]) for event in registry)
    seals: list[StreamSeal] = []
    for seq, (_, event_hash) in enumerate(_stream(total), 1):
        log.append(bytes.fromhex(event_hash))
        if seq % SEAL_EVERY == 0 or seq == total:
            signature = device_key.sign(seal_message(DEVICE, seq, event_hash))
            seals.append(StreamSeal(seq, key_id, b64url(signature)))
    offset = len(registry)

    def device_events() -> Iterator[LoggedEvent]:
        # Generated again rather than kept: the bundle is written as a stream.
        for seq, (body, event_hash) in enumerate(_stream(total), 1):
            index = offset + seq - 1
            yield LoggedEvent(body, event_hash, index, log.audit_path(index))

    signer = LogSigner()
    registry_evidence = StreamEvidence(
        f"registry:{DEVICE}", 1, len(registry),
        [LoggedEvent(canonical_body(event), event["hash"], index, log.audit_path(index))
         for index, event in enumerate(registry)],
    )  # fmt: skip
    with path.open("wb", buffering=1 << 20) as out:
        write_bundle(
            out,
            scope=Scope(kind="device", device_id=DEVICE),
            log=LogEvidence(ORIGIN, signer.verifier_key, signer.checkpoint(log)),
            streams=[registry_evidence, StreamEvidence(DEVICE, 1, total, device_events(), seals)],
        )
