"""Custody holds over any reassignment history (DESIGN §9), on SQLite and PostgreSQL:
random runs of sessions, punches, faults, cartridge changes and assignments between
clinics A, B, C and none, folded by the real projector at random moments, never let
a clinic see an event, session or alert from another clinic's custody, and let it
see all of its own.

The expected owner of everything is written down as the history is made, from who
held the device at that moment (a session's events: who held it when it started),
independently of the code under test."""

import itertools
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Final

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.api import Role, commands, create_token
from services.eventstore import EventStore, open_event_store
from services.projections.read_store import ReadModelStore
from services.projector import Projector
from tests.support.api_client import api_client, bearer
from tests.support.api_world import HandpieceWriter

CLINICS: Final = ("clinic-a", "clinic-b", "clinic-c")
STEP = st.one_of(
    st.sampled_from([*CLINICS, None]).map(lambda clinic: ("assign", clinic)),
    st.sampled_from(["start", "punch", "punch", "end", "fault", "cartridge", "project"]).map(
        lambda kind: (kind, None)
    ),
)
HISTORIES = st.lists(STEP, min_size=1, max_size=24)
_devices = itertools.count(1)


@dataclass
class Platform:
    url: str
    store: EventStore
    projector: Projector
    client: TestClient
    tokens: dict[str | None, str]
    """By clinic; ``None``: the manufacturer."""

    def fold(self) -> None:
        while self.projector.step():
            pass

    def get(self, path: str, clinic: str | None) -> Any:
        return self.client.get(path, headers=bearer(self.tokens[clinic]))


@dataclass
class Expected:
    """Who owns what, as the history was made."""

    holder: str | None = None
    event_owner: dict[int, str | None] = field(default_factory=dict)
    session_owner: dict[str, str | None] = field(default_factory=dict)
    session_seqs: dict[str, set[int]] = field(default_factory=dict)
    secrets: dict[str, str | None] = field(default_factory=dict)
    """Text only its owner may ever read: session ids, operators, lots, fault texts."""
    punched: dict[str, int] = field(default_factory=dict)
    installed_lot: str | None = None
    """The lot of the cartridge in the handpiece: it passes with the device, so its
    holder's device page shows it whoever installed it."""

    def owned_by(self, clinic: str | None, things: dict[Any, str | None]) -> set[Any]:
        return {thing for thing, owner in things.items() if owner == clinic}


@pytest.fixture
def platform(store_url: str) -> Iterator[Platform]:
    """A store, the real projector and the API over one database, tokens per clinic."""
    store = open_event_store(store_url)
    read_models = ReadModelStore(store_url)
    tokens: dict[str | None, str] = {}
    for clinic in CLINICS:
        _, tokens[clinic] = create_token(read_models.engine, Role.CLINIC, clinic, clinic)
    _, tokens[None] = create_token(read_models.engine, Role.MANUFACTURER, None, "fleet")
    with api_client(store_url) as client:
        yield Platform(store_url, store, Projector(store, read_models), client, tokens)
    store.close()
    read_models.close()


def _make(platform: Platform, device_id: str, history: list[tuple[str, Any]]) -> Expected:
    expected = Expected()
    writer = HandpieceWriter(platform.store, device_id)
    commands.register_device(platform.store, device_id, "CX-2", "fleet-ops")

    def owned(seq: int, owner: str | None) -> None:
        expected.event_owner[seq] = owner

    expected.installed_lot = f"LOT-{uuid.uuid4()}"
    owned(writer.install_cartridge(f"CT-{device_id}-0", expected.installed_lot).seq, None)
    for kind, clinic in history:
        session = writer.session_id
        if kind == "assign":
            commands.assign_device(platform.store, device_id, clinic, "fleet-ops")
            expected.holder = clinic
        elif kind == "project":
            platform.fold()
        elif kind == "start" and session is None:
            session = str(uuid.uuid4())
            operator = f"op-{uuid.uuid4()}"
            expected.session_owner[session] = expected.holder
            expected.secrets |= {session: expected.holder, operator: expected.holder}
            expected.session_seqs[session] = {writer.start_session(session, operator).seq}
            expected.punched[session] = 0
            owned(max(expected.session_seqs[session]), expected.holder)
        elif kind in ("start", "punch") and session is not None:
            seq = writer.punch(actuations=4).seq
            expected.punched[session] += 4
            expected.session_seqs[session].add(seq)
            owned(seq, expected.session_owner[session])
        elif kind == "end" and session is not None:
            actuations = expected.punched[session]
            seq = writer.end_session(actuations, actuations * writer.needles).seq
            expected.session_seqs[session].add(seq)
            owned(seq, expected.session_owner[session])
        elif kind == "fault":
            message = f"fault text {uuid.uuid4()}"
            expected.secrets[message] = expected.holder
            owned(writer.fault("E-VAC-LOW", message).seq, expected.holder)
        elif kind == "cartridge":
            lot = expected.installed_lot = f"LOT-{uuid.uuid4()}"
            expected.secrets[lot] = expected.holder
            owned(
                writer.install_cartridge(f"CT-{device_id}-{writer.seq}", lot).seq, expected.holder
            )
    platform.fold()
    return expected


def _walk(platform: Platform, path: str, clinic: str | None) -> list[Any]:
    response = platform.get(path, clinic)
    assert response.status_code == 200, response.text
    page = response.json()
    items: list[Any] = page["items"]
    while page["next_cursor"]:
        page = platform.get(f"{path}&cursor={page['next_cursor']}", clinic).json()
        items += page["items"]
    return items


def _check_clinic(
    platform: Platform, device_id: str, clinic: str, expected: Expected
) -> dict[str, str]:
    """Everything ``clinic`` reads about the device; returns the bodies it received."""
    bodies: dict[str, str] = {}
    sessions = _walk(platform, f"/api/v1/sessions?device_id={device_id}", clinic)
    assert {s["session_id"] for s in sessions} == expected.owned_by(clinic, expected.session_owner)
    for session_id, owner in expected.session_owner.items():
        detail = platform.get(f"/api/v1/sessions/{session_id}", clinic)
        bodies[f"session {session_id}"] = detail.text
        if owner != clinic:
            assert detail.status_code == 404
            continue
        shown = {event["seq"] for event in detail.json()["events"]}
        assert expected.session_seqs[session_id] <= shown
        assert {expected.event_owner[seq] for seq in shown} == {clinic}
    export = platform.get(f"/api/v1/audit/sessions.csv?device_id={device_id}", clinic)
    bodies["export"] = export.text
    exported = {line.split(",")[0] for line in export.text.splitlines()[1:]}
    assert exported == expected.owned_by(clinic, expected.session_owner)
    device = platform.get(f"/api/v1/devices/{device_id}", clinic)
    history = platform.get(f"/api/v1/devices/{device_id}/events?limit=500", clinic)
    bodies |= {"device": device.text, "history": history.text}
    if expected.holder != clinic:
        assert (device.status_code, history.status_code) == (404, 404)
    else:
        seen = {event["seq"] for event in history.json()["items"]}
        assert seen == expected.owned_by(clinic, expected.event_owner)
        open_session = device.json()["open_session_id"]
        assert open_session is None or expected.session_owner[open_session] == clinic
    alerts = _walk(platform, f"/api/v1/alerts?device_id={device_id}&limit=100", clinic)
    assert {alert["clinic_id"] for alert in alerts} <= {clinic}
    bodies["alerts"] = str(alerts)
    return bodies


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(history=HISTORIES)
def test_no_clinic_ever_sees_another_clinics_custody(
    platform: Platform, history: list[tuple[str, Any]]
) -> None:
    """Whatever the history, each clinic reads exactly its own sessions, its own events
    while it holds the device, alerts of its own, and no text another clinic owns; the
    manufacturer reads everything."""
    device_id = f"HP-{next(_devices):06d}"
    expected = _make(platform, device_id, history)
    for clinic in CLINICS:
        foreign = {text for text, owner in expected.secrets.items() if owner != clinic}
        for read, body in _check_clinic(platform, device_id, clinic, expected).items():
            shared = {expected.installed_lot} if read == "device" else set()
            assert not [text for text in foreign - shared if text in body], (read, body)
    everything = _walk(platform, f"/api/v1/devices/{device_id}/events?limit=500", None)
    assert {event["seq"] for event in everything} == set(expected.event_owner)
    sessions = _walk(platform, f"/api/v1/sessions?device_id={device_id}", None)
    assert {session["session_id"] for session in sessions} == set(expected.session_owner)
