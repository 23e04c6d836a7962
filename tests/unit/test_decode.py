"""Decoding event batches: every input yields events or reasoned rejections, never a crash."""

import contextlib
import copy
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import (
    GENESIS_HASH,
    MAX_BATCH_EVENTS,
    RejectionReason,
    canonical_body,
    decode_event_batch,
    event_hash,
)
from tests.support.vectors import STREAM_DEVICES, batch_payload, load_invalid, load_stream


def _rehash(event: dict[str, Any]) -> dict[str, Any]:
    event = {key: value for key, value in event.items() if key != "hash"}
    event["hash"] = event_hash(event)
    return event


@pytest.mark.parametrize("device_id", STREAM_DEVICES)
def test_vector_streams_decode_completely(vectors_dir: Path, device_id: str) -> None:
    """Each valid vector stream decodes to all its events, bodies hashing to their hashes."""
    events = load_stream(vectors_dir, device_id)["events"]
    decoded = decode_event_batch(device_id, batch_payload(device_id, events))
    assert decoded.rejections == ()
    assert [event.seq for event in decoded.events] == [event["seq"] for event in events]
    assert all(
        sealed.body == canonical_body(raw)
        for sealed, raw in zip(decoded.events, events, strict=True)
    )


def test_invalid_vectors_are_rejected_with_their_reason(vectors_dir: Path) -> None:
    """Each invalid vector yields no event and a rejection of the stated category."""
    cases = load_invalid(vectors_dir)
    assert len(cases) >= 7
    for case in cases:
        decoded = decode_event_batch(case["topic_device"], case["payload"].encode())
        assert decoded.events == (), case["name"]
        assert [rejection.reason for rejection in decoded.rejections] == [
            RejectionReason(case["reason"])
        ], case["name"]
        assert decoded.rejections[0].detail, case["name"]


def test_one_bad_event_costs_the_others_nothing(vectors_dir: Path) -> None:
    """A schema error in one event rejects that event only; the rest of the batch decodes."""
    events = load_stream(vectors_dir, "HP-000011")["events"]
    broken = copy.deepcopy(events)
    broken[5]["data"]["actuations"] = -4
    decoded = decode_event_batch("HP-000011", batch_payload("HP-000011", broken))
    assert len(decoded.events) == len(events) - 1
    (rejection,) = decoded.rejections
    assert rejection.reason is RejectionReason.SCHEMA
    assert rejection.seq == events[5]["seq"]
    assert "actuations" in rejection.detail
    assert orjson.loads(rejection.raw) == broken[5]


def test_event_of_another_device_inside_a_batch_is_an_identity_rejection(vectors_dir: Path) -> None:
    """A correctly hashed event naming another device is refused as identity, alone."""
    events = load_stream(vectors_dir, "HP-000011")["events"][:3]
    forged = _rehash({**events[2], "device_id": "HP-000012"})
    decoded = decode_event_batch("HP-000011", batch_payload("HP-000011", [*events[:2], forged]))
    assert len(decoded.events) == 2
    assert [rejection.reason for rejection in decoded.rejections] == [RejectionReason.IDENTITY]


def test_first_event_must_start_from_genesis(vectors_dir: Path) -> None:
    """seq 1 pointing anywhere but 64 zeros is an integrity rejection."""
    first = load_stream(vectors_dir, "HP-000011")["events"][0]
    forged = _rehash({**first, "prev_hash": "1" * 64})
    assert first["prev_hash"] == GENESIS_HASH
    decoded = decode_event_batch("HP-000011", batch_payload("HP-000011", [forged]))
    assert [rejection.reason for rejection in decoded.rejections] == [RejectionReason.INTEGRITY]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("occurred_at", "2026-11-24T09:00:01.000+01:00"),
        ("occurred_at", 1764000000),
        ("seq", "4"),
        ("seq", 4.0),
        ("seq", 0),
        ("schema_version", 2),
        ("type", "device.registered"),
        ("unexpected", "member"),
    ],
)
def test_envelope_rules_are_enforced(vectors_dir: Path, field: str, value: Any) -> None:
    """Non-UTC times, loose numbers, other versions, platform types and extra members
    are schema errors."""
    event = load_stream(vectors_dir, "HP-000011")["events"][3]
    forged = _rehash({**event, field: value})
    decoded = decode_event_batch("HP-000011", batch_payload("HP-000011", [forged]))
    assert decoded.events == ()
    assert [rejection.reason for rejection in decoded.rejections] == [RejectionReason.SCHEMA]


def test_punch_window_must_not_run_backwards(vectors_dir: Path) -> None:
    """window_end before window_start is a schema error (a rule local to the event)."""
    event = copy.deepcopy(load_stream(vectors_dir, "HP-000011")["events"][3])
    event["data"]["window_end"] = "2026-11-24T08:00:00.000Z"
    decoded = decode_event_batch("HP-000011", batch_payload("HP-000011", [_rehash(event)]))
    assert [rejection.reason for rejection in decoded.rejections] == [RejectionReason.SCHEMA]
    assert "window_end" in decoded.rejections[0].detail


def test_batches_over_the_event_limit_are_refused(vectors_dir: Path) -> None:
    """More than 500 events in one batch is a schema error for the whole batch."""
    event = load_stream(vectors_dir, "HP-000011")["events"][0]
    decoded = decode_event_batch(
        "HP-000011", batch_payload("HP-000011", [event] * (MAX_BATCH_EVENTS + 1))
    )
    assert decoded.events == ()
    assert [rejection.reason for rejection in decoded.rejections] == [RejectionReason.SCHEMA]


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"\xff\xfe",
        b"[" * 100_000,
        b'{"device_id": "HP-000011", "events": [{"seq": 1' + b"0" * 400 + b"}]}",
        b'{"device_id": "HP-000011", "events": [NaN]}',
        b'{"device_id": "HP-000011", "events": "none"}',
        b"null",
    ],
)
def test_hostile_payloads_are_rejections(payload: bytes) -> None:
    """Deep nesting, huge numbers, NaN, wrong types and invalid UTF-8 come back as rejections."""
    decoded = decode_event_batch("HP-000011", payload)
    assert decoded.events == ()
    assert len(decoded.rejections) == 1


@settings(max_examples=300)
@given(st.binary(max_size=2048))
def test_random_bytes_never_raise(payload: bytes) -> None:
    """Any bytes decode to a rejection (or, vanishingly, a valid batch), never an exception."""
    decoded = decode_event_batch("HP-000011", payload)
    assert decoded.rejections or decoded.events


_json_leaf = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats()
    | st.text(max_size=20)
)
_json_value = st.recursive(
    _json_leaf,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=10,
)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_mutated_valid_batches_account_for_every_event(
    vectors_dir: Path, data: st.DataObject
) -> None:
    """Replacing any member of any event by any JSON value never raises, and every
    event is either decoded or rejected: nothing is silently dropped."""
    events = copy.deepcopy(load_stream(vectors_dir, "HP-000012")["events"][:8])
    victim = data.draw(st.sampled_from(events))
    target = victim
    if data.draw(st.booleans()):
        target = victim["data"]
    key = data.draw(st.sampled_from(sorted(target)))
    target[key] = data.draw(_json_value)
    if data.draw(st.booleans()):
        with contextlib.suppress(ValueError):  # values canonical JSON cannot represent
            victim.update(_rehash(victim))
    decoded = decode_event_batch(
        "HP-000012",
        orjson.dumps(
            {"device_id": "HP-000012", "events": events}, option=orjson.OPT_PASSTHROUGH_SUBCLASS
        )
        if _finite(events)
        else b"{}",
    )
    if len(decoded.rejections) == 1 and decoded.rejections[0].seq is None and not decoded.events:
        return  # the mutation broke the batch as a whole (e.g. a non-object event)
    assert len(decoded.events) + len(decoded.rejections) == len(events)


def _finite(value: Any) -> bool:
    try:
        orjson.dumps(value)
    except TypeError:
        return False
    return True
