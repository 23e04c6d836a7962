"""An alert's id names its spell by the device's clock where it has one: a backlog
received in one batch stamps every event with the same receive time, and two spells
of one fault in it are still two alerts."""

from datetime import UTC, datetime, timedelta

from schemas.device_events import Severity
from schemas.platform_events import AlertRule
from services.alerts.conditions import Condition
from services.alerts.events import alert_id_for

RECEIVED = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def _fault(device_time: datetime | None) -> Condition:
    return Condition(
        AlertRule.DEVICE_FAULT, "E-VAC-LOW", Severity.WARNING, "E-VAC-LOW: vacuum low",
        RECEIVED, device_time=device_time,
    )  # fmt: skip


def test_two_spells_received_together_are_two_alerts() -> None:
    first = _fault(RECEIVED - timedelta(hours=3))
    second = _fault(RECEIVED - timedelta(hours=1))
    assert alert_id_for("HP-000001", first) != alert_id_for("HP-000001", second)


def test_a_spell_the_device_dates_as_received_is_named_by_that_moment() -> None:
    """Where the device's time equals the receive time the condition keeps none beside
    it, and the id is the one the receive time names."""
    dated = _fault(None)
    assert alert_id_for("HP-000001", dated) == alert_id_for("HP-000001", _fault(RECEIVED))


def test_the_same_spell_evaluated_again_is_the_same_alert() -> None:
    moment = RECEIVED - timedelta(minutes=5)
    assert alert_id_for("HP-000001", _fault(moment)) == alert_id_for("HP-000001", _fault(moment))
