"""A batch's alert events (raised, escalated, resolved) are appended in one
transaction: all of them land, or none does and the batch is folded again."""

import pytest

from schemas import SealedEvent
from services.alerts.engine import Escalation
from services.eventstore import Cursor, EventStore, StoredEvent
from services.projections.read_store import ReadModelStore
from services.projector import Projector
from services.projector import runner as projector_runner
from tests.integration.test_needle_ladder import _story


def _refused(escalation: Escalation, head: StoredEvent | None) -> SealedEvent | None:
    raise RuntimeError("stopped while escalating")


def test_an_alert_raised_and_escalated_in_one_batch_lands_together(
    store: EventStore, store_url: str, adapter: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """80 % and end of life in one batch raise an alert and escalate it: when the
    escalation cannot be built the raised alert is not stored either; folded again,
    both are stored, the escalation after the raise, in one commit."""
    store.append(_story([400, 400, 150]))
    events_stored = store.count_events()
    read_models = ReadModelStore(store_url)
    monkeypatch.setattr(projector_runner, "_escalation_after", _refused)
    with pytest.raises(RuntimeError):
        Projector(store, read_models).step()
    assert store.count_events() == events_stored
    monkeypatch.undo()

    projector = Projector(store, read_models)
    while projector.step():
        pass
    (alert,) = {event.stream_id for event in store.read(Cursor.START, 100)
                if event.stream_id.startswith("alert:")}  # fmt: skip
    stream = store.read_stream(alert)
    assert [event.type for event in stream] == ["alert.raised", "alert.escalated"]
    if adapter == "postgres":
        assert stream[0].cursor.commit == stream[1].cursor.commit
    read_models.close()
