"""The alert notice: one JSON document per alert state change, built from stored
events alone."""

import uuid
from typing import Any

import orjson
import pytest

from schemas import GENESIS_HASH, AlertAcknowledged, AlertRaised, AlertResolved, seal
from schemas.streams import alert_stream
from services.delivery import AlertState, build_notice, is_alert_stream
from tests.support.streams import event_fields

ALERT_ID = "7d0f3c1e-2b4a-4f6e-9c8d-1a2b3c4d5e6f"
NOTICE_KEYS = [
    "alert_id", "device_id", "clinic_id", "rule", "subject", "severity", "state", "message",
    "at", "event_id", "seq", "context",
]  # fmt: skip


def _alert_stream(clinic_id: str | None) -> list[Any]:
    stream = alert_stream(ALERT_ID)
    raised_data = {
        "alert_id": ALERT_ID, "rule": "needle_life_low", "subject": "CT-00001",
        "severity": "warning", "clinic_id": clinic_id, "message": "cartridge at 81 % of its life",
        "context": {"life_used_pct": 81.2, "cartridge_id": "CT-00001"},
    }  # fmt: skip
    steps: list[tuple[str, dict[str, Any]]] = [
        ("alert.raised", raised_data),
        ("alert.acknowledged", {"alert_id": ALERT_ID, "by": "nurse-4", "note": "spare ordered"}),
        ("alert.resolved", {"alert_id": ALERT_ID, "by": "engine", "note": None}),
    ]
    events, prev_hash = [], GENESIS_HASH
    for seq, (kind, data) in enumerate(steps, start=1):
        fields = event_fields("HP-000123", seq, prev_hash, kind, data)
        fields["event_id"] = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{ALERT_ID}:{seq}"))
        sealed = seal(fields, stream)
        events.append(sealed.event)
        prev_hash = sealed.hash
    return events


def test_raised_notice_holds_every_documented_field_in_order() -> None:
    """A raised alert's notice carries the alert's facts under the documented keys."""
    raised, _, _ = _alert_stream("clinic-7")
    assert isinstance(raised, AlertRaised)
    document = orjson.loads(build_notice(raised, raised).to_json())
    assert list(document) == NOTICE_KEYS
    assert document == {
        "alert_id": ALERT_ID, "device_id": "HP-000123", "clinic_id": "clinic-7",
        "rule": "needle_life_low", "subject": "CT-00001", "severity": "warning",
        "state": "raised", "message": "cartridge at 81 % of its life",
        "at": "2026-11-24T09:00:02.000Z", "event_id": str(raised.event_id), "seq": 1,
        "context": {"life_used_pct": 81.2, "cartridge_id": "CT-00001"},
    }  # fmt: skip


@pytest.mark.parametrize(
    ("index", "state"), [(1, AlertState.ACKNOWLEDGED), (2, AlertState.RESOLVED)]
)
def test_later_changes_take_the_alert_facts_from_the_raised_event(
    index: int, state: AlertState
) -> None:
    """An acknowledgement or resolution names its own time, event and seq, and the
    raised event's clinic, rule, subject, severity, message and context."""
    events = _alert_stream("clinic-7")
    raised, change = events[0], events[index]
    assert isinstance(raised, AlertRaised)
    assert isinstance(change, AlertAcknowledged | AlertResolved)
    notice = build_notice(change, raised)
    assert notice.state is state
    assert (notice.event_id, notice.seq) == (str(change.event_id), index + 1)
    assert notice.at == f"2026-11-24T09:00:0{2 * (index + 1)}.000Z"
    assert (notice.clinic_id, notice.rule, notice.subject, notice.severity) == (
        "clinic-7", "needle_life_low", "CT-00001", "warning",
    )  # fmt: skip
    assert notice.message == "cartridge at 81 % of its life"
    assert notice.context == {"life_used_pct": 81.2, "cartridge_id": "CT-00001"}


def test_an_alert_of_no_clinic_has_a_null_clinic() -> None:
    """A device owned by no clinic yields a notice with ``clinic_id`` null."""
    raised = _alert_stream(None)[0]
    assert isinstance(raised, AlertRaised)
    assert orjson.loads(build_notice(raised, raised).to_json())["clinic_id"] is None


@pytest.mark.parametrize(
    ("stream_id", "expected"),
    [("alert:7d0f3c1e", True), ("HP-000123", False), ("registry:HP-000123", False)],
)
def test_only_alert_streams_are_alert_streams(stream_id: str, expected: bool) -> None:
    """The notifier passes over device and registry streams."""
    assert is_alert_stream(stream_id) is expected
