"""An open alert's latest state, retained on its own topic of a real Mosquitto: an
escalation replaces the raise there (one message per alert for a subscriber that
connects later), and the resolution clears it."""

import uuid
from collections.abc import Iterator
from datetime import timedelta

import orjson
import pytest

from schemas import SealedEvent, Severity, clinic_alert_state_topic
from schemas.platform_events import AlertRule
from services.alerts import events as alert_events
from services.alerts.conditions import Condition
from services.delivery import Notifier, NotifierOptions
from services.eventstore import EventStore
from services.projections.read_store import ReadModelStore
from tests.support.api_client import MASTER_KEY
from tests.support.mosquitto import TemporaryMosquitto
from tests.support.streams import EPOCH
from tests.support.subscriber import RecordingSubscriber
from transport import BrokerAddress

CLINIC = "clinic-state"
DEVICE = "HP-000661"


@pytest.fixture(scope="module")
def broker() -> Iterator[TemporaryMosquitto]:
    """A real Mosquitto on loopback."""
    with TemporaryMosquitto() as mosquitto:
        yield mosquitto


@pytest.fixture
def read_models(store_url: str) -> Iterator[ReadModelStore]:
    opened = ReadModelStore(store_url)
    yield opened
    opened.close()


def _ladder(cartridge: str) -> list[SealedEvent]:
    """Raised at 80 %, escalated to end of life, resolved with the cartridge's removal."""
    low = Condition(AlertRule.NEEDLE_LIFE_LOW, cartridge, Severity.WARNING, "81 % worn", EPOCH)
    raised = alert_events.raised(DEVICE, CLINIC, low)
    alert_id = orjson.loads(raised.body)["data"]["alert_id"]
    end = Condition(AlertRule.NEEDLE_END_OF_LIFE, cartridge, Severity.CRITICAL, "replace", EPOCH)
    climbed = alert_events.escalated(
        alert_id, DEVICE, end, seq=2, prev_hash=raised.hash, at=EPOCH + timedelta(minutes=1)
    )
    closed = alert_events.resolved(
        alert_id, DEVICE, 3, climbed.hash, EPOCH + timedelta(minutes=2), "cartridge removed"
    )
    return [raised, climbed, closed]


def _retained(broker: TemporaryMosquitto) -> dict[str, dict[str, object]]:
    """What a subscriber connecting now finds on the clinic's alert-state topics."""
    topic_filter = clinic_alert_state_topic(CLINIC, "+")
    name = f"late-{uuid.uuid4().hex[:8]}"
    with RecordingSubscriber(broker.port, topic_filter, name) as late:
        late.wait_for(lambda s: len(s.messages) > 0, timeout=2.0)
        return {topic: orjson.loads(payload) for topic, payload in late.messages if payload}


def test_an_escalation_replaces_the_retained_state_and_the_resolution_clears_it(
    store: EventStore, read_models: ReadModelStore, broker: TemporaryMosquitto
) -> None:
    """After raise and escalation a late subscriber finds one message for the alert,
    ``escalated`` at end of life; after the resolution it finds none."""
    ladder = _ladder(f"CT-{uuid.uuid4().hex[:6]}")
    alert_id = orjson.loads(ladder[0].body)["data"]["alert_id"]
    options = NotifierOptions(client_id=f"notifier-{uuid.uuid4().hex[:8]}")
    notifier = Notifier(
        store, read_models.engine, BrokerAddress.parse(broker.url), MASTER_KEY, options
    )
    try:
        store.append(ladder[:2])
        while notifier.step():
            pass
        found = _retained(broker)
        assert list(found) == [clinic_alert_state_topic(CLINIC, alert_id)]
        (state,) = found.values()
        assert (state["alert_id"], state["state"], state["rule"], state["severity"]) == (
            alert_id, "escalated", "needle_end_of_life", "critical",
        )  # fmt: skip
        store.append(ladder[2:])
        while notifier.step():
            pass
        assert _retained(broker) == {}
    finally:
        notifier.close()
