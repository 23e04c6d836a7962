"""The needle-life ladder over a real store and read models (SQLite and PostgreSQL):
a worn cartridge is one alert that escalates in place with its history, a person's
acknowledgement does not hide a higher rung, and a store written before the ladder
(three parallel alerts for one cartridge) replays into one alert with three rungs."""

import uuid
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import select

from schemas import GENESIS_HASH, SealedEvent, seal
from schemas.streams import alert_stream, device_stream
from services.api import Role, create_token
from services.eventstore import EventStore
from services.projections.read_store import ReadModelStore
from services.projector import Projector, replay
from tests.support.api_client import api_client, bearer
from tests.support.streams import EPOCH, event_fields, timestamp

DEVICE = "HP-000540"
CARTRIDGE = "CT-00540"
SESSION = "0b8f6d2e-5a4c-4e1f-8d3b-6c2a1f0e9d77"
LEGACY_NAMESPACE = uuid.UUID("5d0c6f38-2f5c-4d4f-9d55-3b3f6d0b7a11")


def _story(actuations: list[int]) -> list[SealedEvent]:
    """Boot, a cartridge rated 1000 actuations, a session over a large area, punches."""
    steps: list[tuple[str, dict[str, Any]]] = [
        ("agent.started", {"firmware_version": "2.4.1", "agent_version": "1.0.0",
                           "boot_id": "b-1"}),
        ("cartridge.installed", {"cartridge_id": CARTRIDGE, "lot": "L1", "needles": 1,
                                 "needle_gauge": 22, "core_diameter_mm": 0.5,
                                 "rated_actuations": 1000}),
        ("session.started", {"session_id": SESSION, "treatment_area": "neck",
                             "area_cm2": 2000.0, "operator_ref": "op-1",
                             "cartridge_id": CARTRIDGE}),
    ]  # fmt: skip
    for count in actuations:
        start = EPOCH + timedelta(seconds=2 * len(steps))
        steps.append(("cores.punched", {
            "session_id": SESSION, "cartridge_id": CARTRIDGE, "actuations": count,
            "cores": count, "depth_mm": 1.5, "window_start": timestamp(start),
            "window_end": timestamp(start + timedelta(seconds=1)),
        }))  # fmt: skip
    events, prev_hash = [], GENESIS_HASH
    for seq, (kind, data) in enumerate(steps, start=1):
        sealed = seal(event_fields(DEVICE, seq, prev_hash, kind, data))
        events.append(sealed)
        prev_hash = sealed.hash
    return events


def _catch_up(projector: Projector) -> None:
    while projector.step():
        pass


def _alert_rows(read_models: ReadModelStore) -> list[dict[str, Any]]:
    table = read_models.tables.alerts
    with read_models.engine.connect() as connection:
        return [dict(row._mapping) for row in connection.execute(select(table))]


def test_a_worn_cartridge_is_one_alert_that_escalates_with_its_history(
    store: EventStore, store_url: str
) -> None:
    """80 %, end of life, overuse arrive one by one: one alert, critical overuse now,
    its three rungs in the API's history on the platform's clock; an acknowledgement
    in between is kept in the history and the escalation re-opens the alert; a replay
    shows the same."""
    story = _story([400, 400, 150, 60])
    read_models = ReadModelStore(store_url)
    projector = Projector(store, read_models)
    _, token = create_token(read_models.engine, Role.MANUFACTURER, None, "qa-lead")
    with api_client(store_url) as client:
        store.append(story[:5])  # 80 %
        _catch_up(projector)
        (alert,) = client.get("/api/v1/alerts", headers=bearer(token)).json()["items"]
        assert (alert["rule"], alert["severity"]) == ("needle_life_low", "warning")
        acknowledged = client.post(
            f"/api/v1/alerts/{alert['alert_id']}/acknowledge", headers=bearer(token)
        )
        assert acknowledged.status_code == 202
        for event in story[5:]:  # end of life, then overuse
            store.append([event])
            _catch_up(projector)
        (alert,) = client.get("/api/v1/alerts", headers=bearer(token)).json()["items"]
        assert (alert["rule"], alert["severity"], alert["status"]) == (
            "cartridge_overuse", "critical", "open",
        )  # fmt: skip
        detail = client.get(f"/api/v1/alerts/{alert['alert_id']}", headers=bearer(token)).json()
        steps = [(step["kind"], step["rule"]) for step in detail["history"]]
        assert steps == [
            ("raised", "needle_life_low"),
            ("acknowledged", None),
            ("escalated", "needle_end_of_life"),
            ("escalated", "cartridge_overuse"),
        ]
        received = [stored.received_at for stored in store.read_stream(device_stream(DEVICE))]
        # The platform's clock, to the millisecond events carry.
        assert datetime.fromisoformat(detail["raised_at"]) == _milliseconds(received[4])
        assert datetime.fromisoformat(detail["escalated_at"]) == _milliseconds(received[6])
        # A second acknowledgement is taken: the escalation re-opened the alert.
        again = client.post(
            f"/api/v1/alerts/{alert['alert_id']}/acknowledge", headers=bearer(token)
        )
        assert again.status_code == 202
    stream = [event.type for event in store.read_stream(alert_stream(alert["alert_id"]))]
    assert stream == [
        "alert.raised", "alert.acknowledged", "alert.escalated", "alert.escalated",
        "alert.acknowledged",
    ]  # fmt: skip
    _catch_up(projector)
    live = _alert_rows(read_models)
    replay(store_url, store)
    assert _alert_rows(read_models) == live
    read_models.close()


def _legacy_raised(rule: str, severity: str, seq_of_cause: int) -> SealedEvent:
    """An ``alert.raised`` as the engine wrote it before the ladder: one alert per rule."""
    since = EPOCH + timedelta(seconds=2 * seq_of_cause)
    name = f"{DEVICE}|{rule}|{CARTRIDGE}|{timestamp(since)}"
    alert_id = str(uuid.uuid5(LEGACY_NAMESPACE, name))
    data = {
        "alert_id": alert_id, "rule": rule, "subject": CARTRIDGE, "severity": severity,
        "clinic_id": None, "message": f"{rule} on {CARTRIDGE}",
        "context": {"cartridge_id": CARTRIDGE},
    }  # fmt: skip
    fields = event_fields(DEVICE, 1, GENESIS_HASH, "alert.raised", data)
    fields["occurred_at"] = timestamp(since)
    fields["event_id"] = str(uuid.uuid5(LEGACY_NAMESPACE, f"{alert_id}|1"))
    return seal(fields, alert_stream(alert_id))


def test_a_store_written_before_the_ladder_replays_into_one_alert_with_three_rungs(
    store: EventStore, store_url: str
) -> None:
    """Three parallel needle alerts of one cartridge, as older releases stored them,
    replay into one alert at its top rung with three rungs of history."""
    store.append(_story([800, 150, 60]))
    legacy = [
        _legacy_raised("needle_life_low", "warning", 4),
        _legacy_raised("needle_end_of_life", "critical", 5),
        _legacy_raised("cartridge_overuse", "critical", 6),
    ]
    store.append(legacy)
    replay(store_url, store)
    read_models = ReadModelStore(store_url)
    (row,) = _alert_rows(read_models)
    first_id = orjson.loads(legacy[0].body)["data"]["alert_id"]
    assert (row["alert_id"], row["rule"], row["severity"], row["status"]) == (
        first_id, "cartridge_overuse", "critical", "open",
    )  # fmt: skip
    _, token = create_token(read_models.engine, Role.MANUFACTURER, None, "qa-lead")
    with api_client(store_url) as client:
        detail = client.get(f"/api/v1/alerts/{first_id}", headers=bearer(token)).json()
    assert [(step["kind"], step["rule"]) for step in detail["history"]] == [
        ("raised", "needle_life_low"),
        ("escalated", "needle_end_of_life"),
        ("escalated", "cartridge_overuse"),
    ]
    assert [step["at"] for step in detail["history"]] == [
        _z(EPOCH + timedelta(seconds=2 * seq)) for seq in (4, 5, 6)
    ]
    read_models.close()


def _z(moment: Any) -> str:
    """A moment as the API writes it."""
    text: str = moment.isoformat().replace("+00:00", "Z")
    return text


def _milliseconds(moment: datetime) -> datetime:
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)
