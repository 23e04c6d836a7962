"""Valid, sealed event streams for tests: a small handpiece story per device."""

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from schemas import GENESIS_HASH, SealedEvent, seal, utc_text

timestamp = utc_text
"""Wire timestamps, as the tests name them."""

EPOCH = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)


def event_fields(
    device_id: str, seq: int, prev_hash: str, kind: str, data: dict[str, Any]
) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"coreline-test:{device_id}:{seq}:{kind}")),
        "device_id": device_id,
        "seq": seq,
        "type": kind,
        "occurred_at": timestamp(EPOCH + timedelta(seconds=2 * seq)),
        "schema_version": 1,
        "data": data,
        "prev_hash": prev_hash,
    }


def punch_data(seq: int, actuations: int = 12, needles: int = 3) -> dict[str, Any]:
    start = EPOCH + timedelta(seconds=2 * seq - 2)
    return {
        "session_id": "6f1c2a4e-6d1f-4c3e-9a7e-2f1f0c9d8e11",
        "cartridge_id": "CT-00001",
        "actuations": actuations,
        "cores": actuations * needles,
        "depth_mm": 1.5,
        "window_start": timestamp(start),
        "window_end": timestamp(start + timedelta(seconds=2)),
    }


def device_stream(
    device_id: str, count: int, *, first_seq: int = 1, prev_hash: str = GENESIS_HASH
) -> list[SealedEvent]:
    """``count`` chained events: boot, cartridge, session start, then punches."""
    stream: list[SealedEvent] = []
    for seq in range(first_seq, first_seq + count):
        kind, data = _story_step(seq)
        sealed = seal(event_fields(device_id, seq, prev_hash, kind, data))
        stream.append(sealed)
        prev_hash = sealed.hash
    return stream


def _story_step(seq: int) -> tuple[str, dict[str, Any]]:
    if seq == 1:
        return "agent.started", {
            "firmware_version": "2.4.1",
            "agent_version": "1.0.0",
            "boot_id": "b-1",
        }
    if seq == 2:
        return "cartridge.installed", {
            "cartridge_id": "CT-00001",
            "lot": "L2611A",
            "needles": 3,
            "needle_gauge": 22,
            "core_diameter_mm": 0.5,
            "rated_actuations": 100000,
        }
    if seq == 3:
        return "session.started", {
            "session_id": "6f1c2a4e-6d1f-4c3e-9a7e-2f1f0c9d8e11",
            "treatment_area": "lower_face",
            "area_cm2": 40.0,
            "operator_ref": "op-7f3a",
            "cartridge_id": "CT-00001",
        }
    return "cores.punched", punch_data(seq)


def reseal(event: SealedEvent, **changes: Any) -> SealedEvent:
    """The same event with some fields changed and its hash recomputed."""
    fields = event.to_wire()
    del fields["hash"]
    fields.update(changes)
    return seal(fields, event.stream_id)
