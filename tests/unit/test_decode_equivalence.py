"""The gateway validates events into plain dicts, not models: it must accept and
refuse exactly what validating into the models did, for the same reasons and with
the same details.  The model-building decoder is kept here as the reference."""

import contextlib
import copy
import math
import typing
from hashlib import sha256
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from schemas import (
    DEVICE_EVENT_TYPES,
    GENESIS_HASH,
    Rejection,
    RejectionReason,
    SealedEvent,
    canonical_body,
    decode_device_event,
    decode_event_batch,
    event_hash,
)
from schemas.canonical import ClosedShape
from schemas.decode import _reject
from schemas.device_events import DeviceEventModel
from schemas.events import DEVICE_EVENT_ADAPTER
from schemas.streams import device_stream
from schemas.validation import describe
from tests.support.vectors import STREAM_DEVICES, batch_payload, load_stream

_DEVICE = "HP-000011"


def _model_type(model: type[BaseModel]) -> str:
    (name,) = typing.get_args(model.model_fields["type"].annotation)
    return str(name)


_SHAPES = {_model_type(m): ClosedShape.of(m) for m in typing.get_args(DeviceEventModel)}


def _reference(device_id: str, raw_event: Any) -> SealedEvent | Rejection:
    """The decoder as it was: every event validated into its models."""
    try:
        event = DEVICE_EVENT_ADAPTER.validator.validate_python(raw_event)
    except ValidationError as error:
        return _reject(device_id, raw_event, RejectionReason.SCHEMA, describe(error))
    if event.device_id != device_id:
        return _reject(
            device_id,
            raw_event,
            RejectionReason.IDENTITY,
            f"event seq {event.seq} names device {event.device_id!r} "
            f"inside a batch of {device_id!r}",
        )
    shape = _SHAPES.get(event.type)
    try:
        body = canonical_body(raw_event) if shape is None else shape.body(raw_event)
    except ValueError as error:
        return _reject(
            device_id,
            raw_event,
            RejectionReason.SCHEMA,
            f"event seq {event.seq} has no canonical form: {error}",
        )
    if sha256(body).hexdigest() != event.hash:
        return _reject(
            device_id,
            raw_event,
            RejectionReason.INTEGRITY,
            f"event seq {event.seq}: hash does not match the SHA-256 of its canonical JSON",
        )
    if event.seq == 1 and event.prev_hash != GENESIS_HASH:
        return _reject(
            device_id,
            raw_event,
            RejectionReason.INTEGRITY,
            "event seq 1 must have a prev_hash of 64 zeros",
        )
    return SealedEvent.of(event, body, device_stream(device_id))


_UUID = "6f1c2a4e-6d1f-4c3e-9a7e-2f1f0c9d8e11"
_HASH = "a" * 64
_DATA: dict[str, dict[str, Any]] = {
    "agent.started": {"firmware_version": "2.4.1", "agent_version": "1.0.0", "boot_id": "b-1"},
    "cartridge.installed": {
        "cartridge_id": "CT-1",
        "lot": "L1",
        "needles": 3,
        "needle_gauge": 22,
        "core_diameter_mm": 0.5,
        "rated_actuations": 1000,
    },
    "session.started": {
        "session_id": _UUID,
        "treatment_area": "lower_face",
        "area_cm2": 40.0,
        "operator_ref": "op-1",
        "cartridge_id": "CT-1",
    },
    "cores.punched": {
        "session_id": _UUID,
        "cartridge_id": "CT-1",
        "actuations": 12,
        "cores": 36,
        "depth_mm": 1.5,
        "window_start": "2026-11-24T09:00:10.000Z",
        "window_end": "2026-11-24T09:00:12.000Z",
    },
    "needle.wear": {
        "cartridge_id": "CT-1",
        "actuations_total": 120,
        "wear_pct": 12.5,
        "insertion_force_n": None,
    },
    "fault.raised": {"fault_code": "E-17", "severity": "warning", "message": "hot"},
    "fault.cleared": {"fault_code": "E-17"},
    "session.ended": {
        "session_id": _UUID,
        "actuations_total": 120,
        "cores_total": 360,
        "duration_s": 61.25,
        "reason": "completed",
    },
    "cartridge.removed": {"cartridge_id": "CT-1", "actuations_total": 120, "reason": "worn"},
    "agent.resynced": {"from_seq": 4, "reason": "state_lost"},
    "config.applied": {"version": 2, "digest": _HASH},
    "config.refused": {"version": 2, "reason": "out of bounds"},
    "command.acknowledged": {"command_id": _UUID, "cmd": "reboot", "result": {"ok": True}},
    "command.rejected": {"command_id": _UUID, "cmd": "reboot", "reason": "expired"},
    "interlock.engaged": {
        "interlock": "recalled_lot",
        "mode": "block",
        "cartridge_id": "CT-1",
        "lot": "L1",
        "reason": "recalled",
    },
    "interlock.released": {"interlock": "locked", "by": "unlocked"},
}


def _base(event_type: str, seq: int = 7) -> dict[str, Any]:
    event: dict[str, Any] = {
        "event_id": "2f45e678-309d-4b79-965e-da32dae44550",
        "device_id": _DEVICE,
        "seq": seq,
        "type": event_type,
        "occurred_at": "2026-11-24T09:00:01.000Z",
        "schema_version": 1,
        "data": copy.deepcopy(_DATA[event_type]),
        "prev_hash": GENESIS_HASH if seq == 1 else _HASH,
    }
    event["hash"] = event_hash(event)
    return event


_SAFE = 2**53 - 1
_tricky = st.sampled_from([
    None, True, False, 0, 1, -1, 1.0, 2.0, 0.5, -0.0, 1e-7, 1e21, _SAFE, _SAFE + 1, 2**64,
    math.nan, math.inf, -math.inf, "", "x", "1", _UUID, _UUID.upper(), _UUID.replace("-", ""),
    f"{{{_UUID}}}", _HASH, "A" * 64, GENESIS_HASH, "HP-000012", "hp-000011", "HP-000011",
    "2026-11-24T09:00:00Z", "2026-11-24T09:00:00.123Z", "2026-11-24T09:00:00+00:00",
    "2026-11-24 09:00:00Z", "2026-02-30T09:00:00Z", "2026-11-24T25:00:00Z", "2026-11-24",
    "1700000000", "T Z", "cores.punched", "fault.raised", "platform.unknown", "device.registered",
    [], {}, [1], {"a": 1}, "warning", "lower_face", "recalled_lot", "locked", "warn", "reboot",
    f"urn:uuid:{_UUID}", f"URN:UUID:{_UUID}", f"{_UUID}\n", f" {_UUID}", _UUID[:-1] + "g",
    f"{{{_UUID.replace('-', '')}}}", _UUID.upper().replace("-", ""), _UUID[:35],
])  # fmt: skip
_json = st.recursive(
    _tricky | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=6,
)
_timestamps = st.sampled_from([
    "2026-11-24T09:00:09.000Z", "2026-11-24T09:00:10.000Z", "2026-11-24T09:00:11.999Z",
    "2026-11-24T09:00:12.000Z", "2026-11-24T09:00:13Z", "2026-11-24T09:00:10.000+00:00",
])  # fmt: skip
_MEANINGFUL: dict[str, st.SearchStrategy[Any]] = {
    # Values that reach the models' rules across members, not only their members' own.
    "window_start": _timestamps,
    "window_end": _timestamps,
    "interlock": st.sampled_from(["cartridge_life", "recalled_lot", "service_overdue", "locked"]),
    "mode": st.sampled_from(["warn", "block"]),
    "cartridge_id": st.sampled_from([None, "CT-1"]),
    "lot": st.sampled_from([None, "L1"]),
}
_names = st.sampled_from(
    sorted({name for data in _DATA.values() for name in data}
           | {"event_id", "device_id", "seq", "type", "occurred_at", "schema_version",
              "data", "prev_hash", "hash", "extra", "Seq"})
)  # fmt: skip


@st.composite
def _mutated(draw: st.DrawFn) -> tuple[str, Any]:
    event_type = draw(st.sampled_from(sorted(_DATA)))
    event = _base(event_type, seq=draw(st.sampled_from([1, 2, 7])))
    for _ in range(draw(st.integers(min_value=0, max_value=3))):
        target = event
        if draw(st.booleans()) and isinstance(event.get("data"), dict):
            target = event["data"]
        action = draw(st.sampled_from(["set", "set", "delete", "add"]))
        if action == "delete" and target:
            del target[draw(st.sampled_from(sorted(target)))]
        elif action == "set" and target:
            name = draw(st.sampled_from(sorted(target)))
            target[name] = draw(_MEANINGFUL.get(name, _json) | _json)
        else:
            target[draw(_names)] = draw(_json)
    if draw(st.booleans()):
        # Half the time with a hash that matches, so the later checks are reached too.
        with contextlib.suppress(ValueError, TypeError):
            event["hash"] = event_hash(event)
    device_id = draw(st.sampled_from([_DEVICE, _DEVICE, "HP-000012"]))
    whole = draw(st.sampled_from([event, event, event, [event], "event", 7, None]))
    return device_id, whole


def _same(new: SealedEvent | Rejection, old: SealedEvent | Rejection) -> None:
    assert type(new) is type(old), (new, old)
    if isinstance(old, Rejection):
        assert new == old
        return
    assert isinstance(new, SealedEvent)
    columns = ("device_id", "seq", "event_id", "type", "occurred_at", "hash", "prev_hash", "body")
    assert [getattr(new, c) for c in columns] == [getattr(old, c) for c in columns]
    assert new.event == old.event


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_mutated())
def test_mutated_events_meet_the_same_verdict_and_reason(case: tuple[str, Any]) -> None:
    """Wrong types, missing, extra and out-of-range members, bad timestamps, UUIDs and
    hashes, non-finite floats, another device: the same acceptance, reason and detail."""
    device_id, raw_event = case
    old = _reference(device_id, copy.deepcopy(raw_event))
    _same(decode_device_event(device_id, copy.deepcopy(raw_event)), old)


@pytest.mark.parametrize("event_type", sorted(_DATA))
def test_every_device_event_type_decodes_without_its_model(event_type: str) -> None:
    """Each type's envelope comes from validation alone; its model only when asked for."""
    raw = _base(event_type)
    sealed = decode_device_event(_DEVICE, copy.deepcopy(raw))
    assert isinstance(sealed, SealedEvent)
    assert sealed._event is None
    reference = _reference(_DEVICE, raw)
    _same(sealed, reference)
    assert sealed._event is not None


def test_every_device_event_type_has_a_sample() -> None:
    assert set(_DATA) == DEVICE_EVENT_TYPES


def test_a_model_rule_across_members_still_refuses() -> None:
    """``window_end`` before ``window_start``: a rule of the model, not of a member."""
    raw = _base("cores.punched")
    raw["data"]["window_end"] = "2026-11-24T09:00:09.000Z"
    raw["hash"] = event_hash(raw)
    outcome = decode_device_event(_DEVICE, raw)
    assert isinstance(outcome, Rejection)
    assert outcome.reason is RejectionReason.SCHEMA
    assert outcome.detail == "cores.punched.data: Value error, window_end is before window_start"


def test_a_batch_of_mutants_keeps_the_good_events_in_order() -> None:
    good = [_base("cores.punched", seq) for seq in (2, 3, 4)]
    bad = copy.deepcopy(good[1])
    bad["data"]["cores"] = -1
    decoded = decode_event_batch(_DEVICE, batch_payload(_DEVICE, [good[0], bad, good[2]]))
    assert [event.seq for event in decoded.events] == [2, 4]
    assert [(r.reason, r.seq) for r in decoded.rejections] == [(RejectionReason.SCHEMA, 3)]
    assert decoded.rejections[0].detail == (
        "cores.punched.data.cores: Input should be greater than or equal to 0"
    )


@pytest.mark.parametrize("device_id", STREAM_DEVICES)
def test_vector_streams_decode_as_the_models_did(vectors_dir: Path, device_id: str) -> None:
    events = load_stream(vectors_dir, device_id)["events"]
    assert events
    for raw in events:
        _same(decode_device_event(device_id, copy.deepcopy(raw)), _reference(device_id, raw))
