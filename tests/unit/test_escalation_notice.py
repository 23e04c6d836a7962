"""An escalation's notice: a state change of the same alert, saying the new rung, and
later notices of that alert keep saying it."""

import uuid
from typing import Any

import orjson

from schemas import GENESIS_HASH, AlertAcknowledged, AlertEscalated, AlertRaised, seal
from schemas.streams import alert_stream
from services.delivery import AlertState, build_notice
from tests.support.streams import event_fields

ALERT_ID = "1e4f7a2c-9b3d-4c5e-8f6a-0d1c2b3a4e5f"


def _stream() -> list[Any]:
    steps: list[tuple[str, dict[str, Any]]] = [
        ("alert.raised", {
            "alert_id": ALERT_ID, "rule": "needle_life_low", "subject": "CT-00009",
            "severity": "warning", "clinic_id": "clinic-2", "message": "81 % worn",
            "context": {"life_used_pct": 81.0},
        }),
        ("alert.escalated", {
            "alert_id": ALERT_ID, "rule": "needle_end_of_life", "severity": "critical",
            "message": "end of life: replace it", "context": {"life_used_pct": 95.2},
        }),
        ("alert.acknowledged", {"alert_id": ALERT_ID, "by": "nurse-1", "note": None}),
    ]  # fmt: skip
    events, prev_hash = [], GENESIS_HASH
    for seq, (kind, data) in enumerate(steps, start=1):
        fields = event_fields("HP-000909", seq, prev_hash, kind, data)
        sealed = seal(fields, alert_stream(ALERT_ID))
        events.append(sealed.event)
        prev_hash = sealed.hash
    return events


def test_an_escalation_notice_names_the_same_alert_and_its_new_rung() -> None:
    """State ``escalated``, the same alert id and clinic, the new rule and severity."""
    raised, climbed, _ = _stream()
    assert isinstance(raised, AlertRaised)
    assert isinstance(climbed, AlertEscalated)
    document = orjson.loads(build_notice(climbed, raised).to_json())
    assert (document["alert_id"], document["clinic_id"], document["subject"]) == (
        ALERT_ID, "clinic-2", "CT-00009",
    )  # fmt: skip
    assert (document["state"], document["rule"], document["severity"]) == (
        AlertState.ESCALATED.value, "needle_end_of_life", "critical",
    )  # fmt: skip
    assert document["context"] == {"life_used_pct": 95.2}
    assert document["seq"] == 2
    assert uuid.UUID(document["event_id"]) == climbed.event_id


def test_a_notice_after_an_escalation_says_the_rung_reached() -> None:
    """An acknowledgement after an escalation is of the end-of-life alert, not the 80 %."""
    raised, climbed, acknowledged = _stream()
    assert isinstance(acknowledged, AlertAcknowledged)
    notice = build_notice(acknowledged, raised, climbed)
    assert (notice.state, notice.rule, notice.severity) == (
        AlertState.ACKNOWLEDGED, "needle_end_of_life", "critical",
    )  # fmt: skip
    assert build_notice(acknowledged, raised).rule == "needle_life_low"
