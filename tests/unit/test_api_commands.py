"""The API's write side (``services.api.commands``) over the in-memory store: what
people do becomes chained platform events, decided against the stream's head."""

import uuid

import pytest

from schemas import GENESIS_HASH, ChainLink, ChainStatus, seal, verify_chain
from schemas.streams import alert_stream, registry_stream
from services.api.commands import assign_device, move_alert, record_service, register_device
from services.api.problems import Problem
from services.eventstore import EventStore, InMemoryEventStore
from tests.support.streams import event_fields

DEVICE = "HP-000123"


def _raise_alert(store: EventStore) -> str:
    alert_id = str(uuid.uuid4())
    data = {
        "alert_id": alert_id, "rule": "device_fault", "subject": "E-VAC-LOW",
        "severity": "critical", "clinic_id": "clinic-a", "message": "vacuum low",
        "context": {"fault_code": "E-VAC-LOW"},
    }  # fmt: skip
    raised = seal(
        event_fields(DEVICE, 1, GENESIS_HASH, "alert.raised", data), alert_stream(alert_id)
    )
    store.append([raised])
    return alert_id


def test_registry_commands_chain_the_devices_stream() -> None:
    """Registering, assigning and servicing a device append seqs 1, 2 and 3 to its
    registry stream, each linked to the one before."""
    store = InMemoryEventStore()
    accepted = [
        register_device(store, DEVICE, "CX-2", "ops"),
        assign_device(store, DEVICE, "clinic-a", "ops"),
        record_service(store, DEVICE, "new seal", 1200, "tech-7"),
    ]
    assert [(a.seq, a.type) for a in accepted] == [
        (1, "device.registered"),
        (2, "device.assigned"),
        (3, "device.serviced"),
    ]
    stream = store.read_stream(registry_stream(DEVICE))
    verdict = verify_chain(ChainLink(e.seq, e.body, e.hash) for e in stream)
    assert (verdict.status, verdict.last_seq) == (ChainStatus.VERIFIED, 3)


def test_a_resolved_alert_cannot_be_resolved_again() -> None:
    """An alert is acknowledged then resolved on its own stream; resolving it again is
    a 409 that appends nothing."""
    store = InMemoryEventStore()
    alert_id = _raise_alert(store)
    move_alert(store, alert_id, DEVICE, "alert.acknowledged", "on it", "nurse-4")
    move_alert(store, alert_id, DEVICE, "alert.resolved", None, "nurse-4")
    with pytest.raises(Problem) as refused:
        move_alert(store, alert_id, DEVICE, "alert.resolved", "again", "nurse-5")
    assert refused.value.status == 409
    assert [e.type for e in store.read_stream(alert_stream(alert_id))] == [
        "alert.raised",
        "alert.acknowledged",
        "alert.resolved",
    ]
