"""The gateway's pure parts: what a message means, and when a gap is asked for."""

from datetime import UTC, datetime

import orjson
import pytest

from gateway.gaps import GapTracker, ResendRequest
from gateway.inbound import PresenceChange, interpret
from schemas import DecodedBatch, Heartbeat, Rejection, RejectionReason
from tests.support.streams import device_stream

NOW = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
DEVICE = "HP-000042"


def _topic(channel: str, device: str = DEVICE) -> str:
    return f"coreline/v1/devices/{device}/{channel}"


def test_event_batches_decode_with_the_topic_as_identity() -> None:
    """An event batch decodes as its topic's device; on another device's topic it is refused."""
    events = [orjson.loads(e.wire_json()) for e in device_stream(DEVICE, 3)]
    payload = orjson.dumps({"device_id": DEVICE, "events": events})
    outcome = interpret(_topic("events"), payload, NOW)
    assert isinstance(outcome, DecodedBatch)
    assert [e.seq for e in outcome.events] == [1, 2, 3]
    forged = interpret(_topic("events", "HP-000043"), payload, NOW)
    assert isinstance(forged, DecodedBatch)
    assert {r.reason for r in forged.rejections} == {RejectionReason.IDENTITY}


def test_heartbeats_and_their_identity() -> None:
    """A heartbeat decodes on its device's topic; on another's, or malformed, it is refused."""
    beat = {"device_id": DEVICE, "sampled_at": "2026-11-25T09:00:00.000Z", "battery_pct": 50.0}
    assert isinstance(interpret(_topic("telemetry"), orjson.dumps(beat), NOW), Heartbeat)
    other = interpret(_topic("telemetry", "HP-000043"), orjson.dumps(beat), NOW)
    assert isinstance(other, Rejection)
    assert other.reason is RejectionReason.IDENTITY
    wrong = interpret(_topic("telemetry"), b'{"device_id": 1}', NOW)
    assert isinstance(wrong, Rejection)
    assert wrong.reason is RejectionReason.SCHEMA


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b'{"state":"online"}', PresenceChange(DEVICE, online=True, at=NOW)),
        (b'{"state":"offline"}', PresenceChange(DEVICE, online=False, at=NOW)),
        (b"", None),
    ],
)
def test_status_messages(payload: bytes, expected: PresenceChange | None) -> None:
    """Online and offline status payloads become presence changes; an empty one is ignored."""
    assert interpret(_topic("status"), payload, NOW) == expected


@pytest.mark.parametrize(
    ("topic", "payload", "reason"),
    [
        (_topic("status"), b'{"state":"asleep"}', RejectionReason.SCHEMA),
        (_topic("telemetry"), b"x" * 5000, RejectionReason.OVERSIZE),
        (_topic("cmd"), b"{}", RejectionReason.IDENTITY),
        ("coreline/v1/devices/lower/events", b"{}", RejectionReason.IDENTITY),
    ],
)
def test_everything_else_is_a_rejection(
    topic: str, payload: bytes, reason: RejectionReason
) -> None:
    """Bad status values, oversize payloads, command topics and bad device ids are rejected."""
    outcome = interpret(topic, payload, NOW)
    assert isinstance(outcome, Rejection)
    assert outcome.reason is reason


def test_a_gap_is_requested_after_the_grace_period_then_retried_then_abandoned() -> None:
    """A gap is requested after its grace, retried on schedule, then abandoned for good."""
    tracker = GapTracker(grace_s=10, retry_every_s=30, max_attempts=2)
    tracker.observe(DEVICE, [(11, 15)], now=0)
    assert tracker.due(now=9.9) == []
    assert tracker.due(now=10) == [ResendRequest(DEVICE, 11, 15, attempt=1)]
    assert tracker.due(now=20) == []
    assert tracker.due(now=40) == [ResendRequest(DEVICE, 11, 15, attempt=2)]
    assert tracker.due(now=70) == []  # out of attempts
    assert tracker.abandoned == 1
    tracker.observe(DEVICE, [(11, 15)], now=80)  # still missing: not asked for again
    assert tracker.due(now=1000) == []


def test_a_filled_or_narrowed_gap_keeps_or_drops_its_history() -> None:
    """A narrowed gap keeps its retry schedule; a filled one is dropped."""
    tracker = GapTracker(grace_s=10, retry_every_s=30, max_attempts=5)
    tracker.observe(DEVICE, [(11, 15), (30, 31)], now=0)
    assert len(tracker.due(now=10)) == 2
    tracker.observe(DEVICE, [(13, 15)], now=12)  # partly filled; 30..31 filled
    assert tracker.open_gaps() == 1
    assert tracker.due(now=20) == []  # the narrowed gap keeps its retry schedule
    assert tracker.due(now=40) == [ResendRequest(DEVICE, 13, 15, attempt=2)]
    tracker.observe(DEVICE, [], now=41)
    assert not tracker.has_open_gaps(DEVICE)


def test_an_online_status_carries_the_devices_head() -> None:
    """A v1.1 ``online`` status carries the device's chain head; a half head is refused."""
    head = {"state": "online", "last_seq": 41, "last_hash": "ab" * 32}
    assert interpret(_topic("status"), orjson.dumps(head), NOW) == PresenceChange(
        DEVICE, online=True, at=NOW, last_seq=41
    )
    half = interpret(_topic("status"), b'{"state":"online","last_seq":3}', NOW)
    assert isinstance(half, Rejection)
    assert half.reason is RejectionReason.SCHEMA


def test_acks_are_not_an_uplink() -> None:
    """Nothing a device publishes on its ``acks`` topic is taken in: it is the platform's."""
    outcome = interpret(_topic("acks"), b'{"stored_through":1,"hash":"' + b"0" * 64 + b'"}', NOW)
    assert isinstance(outcome, Rejection)
    assert outcome.reason is RejectionReason.IDENTITY
