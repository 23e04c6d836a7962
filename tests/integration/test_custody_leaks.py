"""Custody after a reassignment (DESIGN §9), on SQLite and PostgreSQL: a clinic sees a
device's events, sessions and alerts only from the intervals it held it, a session
belonging to the clinic that held the device when it started."""

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from services.api import Role, commands, create_token
from services.eventstore import EventStore, open_event_store
from services.projections.read_store import ReadModelStore
from services.projector import Projector, replay
from tests.support.api_client import api_client, bearer
from tests.support.api_world import HandpieceWriter, project

DEVICE = "HP-000777"
CLINIC_A, CLINIC_B = "clinic-alpha", "clinic-bravo"
SESSION = str(uuid.UUID(int=0xA11CE))
OPERATOR_A = "op-alpha-17"
FAULT_A = "vacuum below 40 kPa at alpha"
FAULT_B = "motor too hot at bravo"
CARTRIDGE_B, LOT_B = "CT-BRAVO-9", "LOT-BRAVO-2026"


@dataclass
class Reassigned:
    """A device that clinic A started a session on, then handed to clinic B, which
    installed its own cartridge and saw a fault, while A's session carried on."""

    url: str
    store: EventStore
    writer: HandpieceWriter
    client: TestClient
    tokens: dict[str, str]
    a_punch_seqs: list[int]
    b_own_seqs: list[int]

    def get(self, path: str, token: str) -> Any:
        return self.client.get(path, headers=bearer(self.tokens[token]))


@pytest.fixture
def reassigned(store_url: str) -> Iterator[Reassigned]:
    """The scenario of the audit finding, folded by the real projector."""
    store = open_event_store(store_url)
    read_models = ReadModelStore(store_url)
    tokens = {}
    for name, role, clinic in (
        ("manufacturer", Role.MANUFACTURER, None),
        ("clinic_a", Role.CLINIC, CLINIC_A),
        ("clinic_b", Role.CLINIC, CLINIC_B),
        ("auditor_b", Role.AUDITOR, CLINIC_B),
    ):
        _, tokens[name] = create_token(read_models.engine, role, clinic, name)
    read_models.close()
    commands.register_device(store, DEVICE, "CX-2", "fleet-ops")
    commands.assign_device(store, DEVICE, CLINIC_A, "fleet-ops")
    writer = HandpieceWriter(store, DEVICE)
    writer.install_cartridge("CT-ALPHA-1", "LOT-ALPHA")
    writer.start_session(SESSION, OPERATOR_A)
    a_punches = [writer.punch().seq]
    writer.fault("E-VAC-LOW", FAULT_A)
    project(store_url)
    commands.assign_device(store, DEVICE, CLINIC_B, "fleet-ops")
    b_own = [writer.install_cartridge(CARTRIDGE_B, LOT_B).seq]
    b_own.append(writer.fault("E-OVERTEMP", FAULT_B).seq)
    a_punches.append(writer.punch().seq)  # A's session carries on, now on B's cartridge
    project(store_url)
    with api_client(store_url) as client:
        yield Reassigned(store_url, store, writer, client, tokens, a_punches, b_own)
    store.close()


def test_a_clinic_reads_none_of_the_next_holders_events_inside_its_open_session(
    reassigned: Reassigned,
) -> None:
    """A's open session shows its own punches, the one after the move included, and
    none of B's events in between: not B's cartridge install with its lot, nor B's
    fault text.  (Its own punch names the cartridge it punched with, which is A's to
    know.)"""
    response = reassigned.get(f"/api/v1/sessions/{SESSION}", "clinic_a")
    assert response.status_code == 200
    events = response.json()["events"]
    seqs = [event["seq"] for event in events]
    assert set(reassigned.a_punch_seqs) <= set(seqs)
    assert not set(reassigned.b_own_seqs) & set(seqs)
    assert "cartridge.installed" not in {event["type"] for event in events}
    for secret in (LOT_B, FAULT_B):
        assert secret not in response.text
    everything = reassigned.get(f"/api/v1/sessions/{SESSION}", "manufacturer").json()
    assert set(reassigned.b_own_seqs) <= {event["seq"] for event in everything["events"]}


def test_a_session_stays_with_the_clinic_it_started_under(reassigned: Reassigned) -> None:
    """Ended after the move, A's session stays A's (list, detail, export, usage); B
    never gets it, nor A's operator or fault."""
    reassigned.writer.end_session(actuations_total=8, cores_total=24)
    project(reassigned.url)
    a_list = reassigned.get(f"/api/v1/sessions?device_id={DEVICE}", "clinic_a").json()
    assert [item["session_id"] for item in a_list["items"]] == [SESSION]
    assert a_list["items"][0]["clinic_id"] == CLINIC_A
    assert a_list["items"][0]["ended_at"] is not None
    detail = reassigned.get(f"/api/v1/sessions/{SESSION}", "clinic_a").json()
    assert detail["events"][-1]["type"] == "session.ended"
    assert reassigned.get(f"/api/v1/sessions/{SESSION}", "clinic_b").status_code == 404
    assert reassigned.get(f"/api/v1/sessions/{SESSION}", "auditor_b").status_code == 404
    b_list = reassigned.get(f"/api/v1/sessions?device_id={DEVICE}", "clinic_b").json()
    assert b_list["items"] == []
    export = reassigned.get(f"/api/v1/audit/sessions.csv?device_id={DEVICE}", "auditor_b")
    assert export.status_code == 200
    assert SESSION not in export.text
    verify = reassigned.get(f"/api/v1/audit/verify?session_id={SESSION}", "auditor_b")
    assert verify.status_code == 404
    usage = reassigned.get(f"/api/v1/devices/{DEVICE}/usage?days=366", "clinic_b").json()
    assert sum(day["sessions"] for day in usage) == 0
    for token in ("clinic_b", "auditor_b"):
        for path in (f"/api/v1/devices/{DEVICE}/events?limit=500", "/api/v1/alerts"):
            response = reassigned.get(path, token)
            for secret in (SESSION, OPERATOR_A, FAULT_A):
                assert secret not in response.text, (token, path, secret)


def test_the_next_holders_device_page_shows_neither_open_session_nor_fault_of_before(
    reassigned: Reassigned,
) -> None:
    """B's device page leaves out A's open session and A's fault but shows its own
    fault; A, which no longer holds the device, gets 404 for it."""
    response = reassigned.get(f"/api/v1/devices/{DEVICE}", "clinic_b")
    assert response.status_code == 200
    device = response.json()
    assert device["open_session_id"] is None
    assert [fault["fault_code"] for fault in device["faults"]] == ["E-OVERTEMP"]
    assert SESSION not in response.text
    assert FAULT_A not in response.text
    listed = reassigned.get("/api/v1/devices", "clinic_b").json()["items"]
    assert [(item["device_id"], item["open_faults"]) for item in listed] == [(DEVICE, 1)]
    whole = reassigned.get(f"/api/v1/devices/{DEVICE}", "manufacturer").json()
    assert whole["open_session_id"] == SESSION
    assert len(whole["faults"]) == 2
    assert reassigned.get(f"/api/v1/devices/{DEVICE}", "clinic_a").status_code == 404


def test_each_clinic_reads_only_its_own_part_of_the_device_history(
    reassigned: Reassigned,
) -> None:
    """B's event history is its own interval's events less A's session's punches; and
    the alerts each clinic sees are those raised in its own custody."""
    history = reassigned.get(f"/api/v1/devices/{DEVICE}/events?limit=500", "clinic_b").json()
    assert [event["seq"] for event in history["items"]] == reassigned.b_own_seqs
    assert reassigned.get(f"/api/v1/devices/{DEVICE}/events", "clinic_a").status_code == 404
    a_alerts = reassigned.get("/api/v1/alerts", "clinic_a").json()["items"]
    b_alerts = reassigned.get("/api/v1/alerts", "clinic_b").json()["items"]
    assert {alert["subject"] for alert in a_alerts} == {"E-VAC-LOW"}
    assert {alert["subject"] for alert in b_alerts} == {"E-OVERTEMP"}


def test_a_reassignment_not_yet_folded_already_hides_what_follows_it(
    reassigned: Reassigned,
) -> None:
    """Before the projector folds a move, the clinic the read models still call the
    holder sees none of the events that arrived after it."""
    commands.assign_device(reassigned.store, DEVICE, CLINIC_A, "fleet-ops")
    project(reassigned.url)
    before = reassigned.get(f"/api/v1/devices/{DEVICE}/events?limit=500", "clinic_a").json()
    commands.assign_device(reassigned.store, DEVICE, CLINIC_B, "fleet-ops")
    later = reassigned.writer.fault("E-DEPTH-SENSOR", "depth sensor at bravo again").seq
    after = reassigned.get(f"/api/v1/devices/{DEVICE}/events?limit=500", "clinic_a").json()
    assert later not in {event["seq"] for event in after["items"]}
    assert after["items"] == before["items"]
    project(reassigned.url)
    seen_by_b = reassigned.get(f"/api/v1/devices/{DEVICE}/events?limit=500", "clinic_b").json()
    assert later in {event["seq"] for event in seen_by_b["items"]}


def test_a_replay_rebuilds_the_same_custody_and_owners(reassigned: Reassigned) -> None:
    """``coreline replay`` folds custody from the registry streams again: the same
    intervals, session clinics and alert clinics as the live projector's."""
    reassigned.writer.end_session(actuations_total=8, cores_total=24)
    project(reassigned.url)
    queries = (
        "SELECT device_id, assigned_seq, clinic_id, from_seq, to_seq FROM read_custody "
        "ORDER BY device_id, assigned_seq",
        "SELECT session_id, clinic_id FROM read_sessions ORDER BY session_id",
        "SELECT alert_id, clinic_id FROM read_alerts ORDER BY alert_id",
    )
    read_models = ReadModelStore(reassigned.url)
    try:
        with read_models.engine.connect() as connection:
            live = [connection.execute(text(query)).all() for query in queries]
        replay(reassigned.url, reassigned.store)
        with read_models.engine.connect() as connection:
            rebuilt = [connection.execute(text(query)).all() for query in queries]
    finally:
        read_models.close()
    assert rebuilt == live
    assert [(row[2], row[3], row[4]) for row in live[0]] == [(CLINIC_A, 1, 4), (CLINIC_B, 5, None)]


def test_silence_during_a_session_is_told_to_the_clinic_the_session_belongs_to(
    reassigned: Reassigned,
) -> None:
    """The clock's ``device_offline`` alert over A's session, open on a device B holds
    now, is A's: B never reads A's session id in an alert."""
    read_models = ReadModelStore(reassigned.url)
    later = datetime.now(UTC) + timedelta(hours=1)
    try:
        Projector(reassigned.store, read_models, clock=lambda: later).tick()
    finally:
        read_models.close()
    project(reassigned.url)
    a_rules = {
        alert["rule"] for alert in reassigned.get("/api/v1/alerts", "clinic_a").json()["items"]
    }
    assert "device_offline" in a_rules
    b_alerts = reassigned.get("/api/v1/alerts", "clinic_b")
    assert "device_offline" not in {alert["rule"] for alert in b_alerts.json()["items"]}
    assert SESSION not in b_alerts.text
