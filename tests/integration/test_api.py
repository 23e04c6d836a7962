"""The HTTP API over a real store (SQLite and PostgreSQL): paging, filters, the
write side through platform events and the projector, exports, verification, and
precise problem details for bad requests."""

import csv
import io
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client import generate_latest
from sqlalchemy import create_engine, text

from tests.support.api_client import api_client, bearer
from tests.support.api_world import CLINIC_A, CLINIC_B, World, build_world, project
from tests.support.mosquitto import TemporaryMosquitto
from tests.support.tamper import as_attacker


@pytest.fixture
def world(store_url: str) -> World:
    """A fresh world per test, on each adapter."""
    return build_world(store_url)


@pytest.fixture
def client(world: World) -> Iterator[TestClient]:
    with api_client(world.database_url) as opened:
        yield opened


def _get(client: TestClient, world: World, path: str, token: str = "manufacturer") -> Any:  # noqa: S107
    response = client.get(path, headers=bearer(world.tokens[token]))
    assert response.status_code == 200, response.text
    return response.json()


def _walk(
    client: TestClient,
    world: World,
    path: str,
    token: str = "manufacturer",  # noqa: S107 - a name in world.tokens
) -> list[Any]:
    """Every item of a paged list, following cursors."""
    items, cursor = [], None
    while True:
        joiner = "&" if "?" in path else "?"
        page = _get(client, world, path + (f"{joiner}cursor={cursor}" if cursor else ""), token)
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items


def test_paging_walks_every_item_once(client: TestClient, world: World) -> None:
    """One item per page, by cursor, gives exactly the items of one big page, in order."""
    for path, key in (
        ("/api/v1/devices", "device_id"),
        ("/api/v1/sessions", "session_id"),
        ("/api/v1/alerts", "alert_id"),
    ):
        whole = _get(client, world, f"{path}?limit=500")["items"]
        walked = _walk(client, world, f"{path}?limit=1")
        assert [item[key] for item in walked] == [item[key] for item in whole]
        assert len(whole) > 3


def test_filters_narrow_the_lists(client: TestClient, world: World) -> None:
    """Clinic, firmware, device and time filters return exactly the matching items."""
    devices = _get(client, world, "/api/v1/devices?limit=500")["items"]
    in_a = _get(client, world, f"/api/v1/devices?clinic_id={CLINIC_A}")["items"]
    assert {d["device_id"] for d in in_a} == {
        d["device_id"] for d in devices if d["clinic_id"] == CLINIC_A
    }
    firmware = devices[0]["firmware_version"]
    same = _get(client, world, f"/api/v1/devices?firmware={firmware}")["items"]
    assert same
    assert all(d["firmware_version"] == firmware for d in same)
    sessions = _get(client, world, "/api/v1/sessions?limit=500")["items"]
    middle = sorted(s["started_at"] for s in sessions)[len(sessions) // 2]
    later = _walk(client, world, f"/api/v1/sessions?from={middle.replace('+', '%2B')}")
    assert {s["session_id"] for s in later} == {
        s["session_id"] for s in sessions if s["started_at"] >= middle
    }
    of_b = _get(client, world, f"/api/v1/sessions?clinic_id={CLINIC_B}&limit=500")["items"]
    assert of_b
    assert all(s["clinic_id"] == CLINIC_B for s in of_b)


def test_a_session_detail_adds_up(client: TestClient, world: World) -> None:
    """A session's events are its own, and its cartridges' cores sum to its count."""
    ended = [s for s in _get(client, world, "/api/v1/sessions?limit=500")["items"] if s["ended_at"]]
    detail = _get(client, world, f"/api/v1/sessions/{ended[0]['session_id']}")
    assert detail["events"][0]["type"] == "session.started"
    assert detail["events"][-1]["type"] == "session.ended"
    assert all(e["data"].get("session_id", detail["session_id"]) == detail["session_id"]
               for e in detail["events"])  # fmt: skip
    assert sum(c["cores"] for c in detail["cartridges"]) == detail["cores_counted"]
    assert detail["reconciled"] is (detail["cores_counted"] == detail["cores_reported"])


def test_registering_and_servicing_go_through_events(client: TestClient, world: World) -> None:
    """Register, assign and service become platform events; once projected, the device
    shows them; registering twice is a conflict."""
    headers = bearer(world.tokens["manufacturer"])
    body = {"device_id": "HP-000301", "model": "CX-3", "clinic_id": CLINIC_B}
    assert client.post("/api/v1/devices", headers=headers, json=body).status_code == 202
    serviced = client.post(
        "/api/v1/devices/HP-000301/services", headers=headers, json={"notes": "new actuator"}
    )
    assert serviced.status_code == 202
    assert serviced.json()["stream_id"] == "registry:HP-000301"
    project(world.database_url)
    device = _get(client, world, "/api/v1/devices/HP-000301")
    assert (device["registered"], device["model"], device["clinic_id"]) == (True, "CX-3", CLINIC_B)
    assert device["actuations_since_service"] == 0
    assert _get(client, world, "/api/v1/devices/HP-000301", "clinic_b")["device_id"] == "HP-000301"
    again = client.post("/api/v1/devices", headers=headers, json=body)
    assert again.status_code == 409
    assert again.json()["title"] == "Conflict"


def test_acknowledge_then_resolve(client: TestClient, world: World) -> None:
    """A clinic acknowledges then resolves its alert; each move is recorded with its
    author, and a repeated move is refused with 409."""
    headers = bearer(world.tokens["clinic_a"])
    alert = _get(client, world, "/api/v1/alerts?status=open", "clinic_a")["items"][0]
    path = f"/api/v1/alerts/{alert['alert_id']}"
    assert (
        client.post(f"{path}/acknowledge", headers=headers, json={"note": "on it"}).status_code
        == 202
    )
    assert client.post(f"{path}/acknowledge", headers=headers).status_code == 409
    project(world.database_url)
    acknowledged = _get(client, world, path, "clinic_a")
    assert acknowledged["status"] == "acknowledged"
    assert "clinic_a" in acknowledged["acknowledged_by"]
    assert acknowledged["note"] == "on it"
    assert (
        client.post(f"{path}/resolve", headers=headers, json={"note": "swapped"}).status_code == 202
    )
    project(world.database_url)
    assert _get(client, world, path, "clinic_a")["status"] == "resolved"
    assert client.post(f"{path}/resolve", headers=headers).status_code == 409


def test_the_csv_export_matches_the_api(client: TestClient, world: World) -> None:
    """The export holds every session the API lists, with the same counts."""
    response = client.get("/api/v1/audit/sessions.csv", headers=bearer(world.tokens["auditor"]))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    listed = {s["session_id"]: s for s in _walk(client, world, "/api/v1/sessions", "auditor")}
    assert {row["session_id"] for row in rows} == set(listed)
    for row in rows:
        session = listed[row["session_id"]]
        assert int(row["cores_counted"]) == session["cores_counted"]
        assert row["reconciled"] == {True: "true", False: "false", None: ""}[session["reconciled"]]
        # The CSV rounds coverage to 2 decimals (docs/auditor-guide.md §5).
        assert float(row["coverage_pct"]) == pytest.approx(session["coverage_pct"], abs=0.005)
    scoped = client.get("/api/v1/audit/sessions.csv", headers=bearer(world.tokens["auditor_a"]))
    assert CLINIC_B not in scoped.text
    assert {r["clinic_id"] for r in csv.DictReader(io.StringIO(scoped.text))} == {CLINIC_A}


def test_verification_finds_tampering(client: TestClient, world: World) -> None:
    """A device's chain verifies, until a stored body is altered: then it is broken at
    that seq, and so is a session spanning it."""
    verified = _get(client, world, "/api/v1/audit/verify?device_id=HP-000101", "auditor")
    assert verified["status"] == "verified"
    assert verified["events_checked"] == world.event_counts["HP-000101"]
    session = _get(client, world, "/api/v1/sessions?device_id=HP-000101&limit=500")["items"][-1]
    detail = _get(client, world, f"/api/v1/sessions/{session['session_id']}")
    seq = detail["events"][1]["seq"]
    _tamper(world.database_url, "HP-000101", seq)
    broken = _get(client, world, "/api/v1/audit/verify?device_id=HP-000101", "auditor")
    assert broken["status"] == "broken"
    assert broken["findings"][0]["seq"] == seq
    verdict = _get(
        client, world, f"/api/v1/audit/verify?session_id={session['session_id']}", "auditor"
    )
    assert verdict["status"] == "broken"


def _tamper(database_url: str, device_id: str, seq: int) -> None:
    from services.eventstore import open_event_store  # noqa: PLC0415

    store = open_event_store(database_url)
    [stored] = store.read_stream(device_id, seq, seq)
    store.close()
    altered = stored.body.replace(b'"data":{', b'"data":{ ', 1)
    as_attacker(
        database_url,
        (
            "UPDATE events SET body = %s WHERE stream_id = %s AND seq = %s",
            (altered, device_id, seq),
        ),
    )


def test_bad_requests_get_precise_problems(client: TestClient, world: World) -> None:
    """Bad cursors, windows, limits and bodies: 4xx problem details naming the fault."""
    headers = bearer(world.tokens["manufacturer"])
    cases = {
        "/api/v1/devices?cursor=bm9wZQ": (400, "cursor"),
        "/api/v1/sessions?from=2026-11-24T00:00:00Z&to=2026-11-23T00:00:00Z": (400, "later"),
        "/api/v1/sessions?from=2026-11-24T00:00:00": (400, "time zone"),
        "/api/v1/devices?limit=0": (422, "query.limit"),
        "/api/v1/devices?status=sleepy": (422, "query.status"),
        "/api/v1/audit/verify": (400, "exactly one"),
        "/api/v1/nowhere": (404, "no such resource"),
    }
    for path, (status, words) in cases.items():
        response = client.get(path, headers=headers)
        assert response.status_code == status, path
        assert response.headers["content-type"] == "application/problem+json"
        assert words in response.json()["detail"], path
    bad_body = client.post("/api/v1/devices", headers=headers, json={"device_id": "x"})
    assert bad_body.status_code == 422
    fields = {error["location"] for error in bad_body.json()["errors"]}
    assert {"body.device_id", "body.model"} <= fields
    policy = client.put(
        f"/api/v1/clinics/{CLINIC_A}/policy", headers=headers, json={"coverage_max_pct": 300}
    )
    assert policy.status_code == 422
    assert "coverage_max_pct" in policy.json()["detail"]


def test_revoked_tokens_are_refused(client: TestClient, world: World) -> None:
    """A revoked token gets 401 at once, with the Bearer challenge."""
    token = world.tokens["clinic_b"]
    assert client.get("/api/v1/devices", headers=bearer(token)).status_code == 200
    listed = _coreline("token", "list", database_url=world.database_url)
    token_id = next(line.split()[0] for line in listed.stdout.splitlines() if "clinic_b" in line)
    assert _coreline("token", "revoke", token_id, database_url=world.database_url).returncode == 0
    refused = client.get("/api/v1/devices", headers=bearer(token))
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"].startswith("Bearer")


def test_dead_letters_are_listed_for_the_manufacturer(client: TestClient, world: World) -> None:
    """Refused input shows with its reason and a preview of the bytes."""
    from schemas import Rejection, RejectionReason  # noqa: PLC0415
    from services.eventstore import DeadLetter, open_event_store  # noqa: PLC0415

    store = open_event_store(world.database_url)
    rejection = Rejection(RejectionReason.MALFORMED, "not JSON: expecting value", b"\xffgarbage")
    store.append([], [DeadLetter("coreline/v1/devices/HP-000101/events", rejection)])
    store.close()
    letters = _get(client, world, "/api/v1/dead-letters")["items"]
    assert [(d["reason"], d["raw_size"]) for d in letters] == [("malformed", 8)]
    assert "garbage" in letters[0]["raw_preview"]


def test_readiness_checks_the_broker(world: World) -> None:
    """/readyz is 200 with the database and a real broker up, 503 naming the broker
    once it is down; /healthz stays 200; the request metrics count requests by route."""
    broker = TemporaryMosquitto().start()
    try:
        with api_client(world.database_url, broker.port) as client:
            assert client.get("/readyz").json() == {
                "status": "ready", "database": "ok", "broker": "ok"
            }  # fmt: skip
            broker.stop()
            down = client.get("/readyz")
            assert down.status_code == 503
            assert down.json()["broker"].startswith("unreachable")
            assert client.get("/healthz").status_code == 200
            metrics = generate_latest().decode()  # served by --metrics-port, not here
            assert (
                'coreline_api_requests_total{method="GET",route="/readyz",status="503"}' in metrics
            )
    finally:
        broker.stop()


def test_token_create_prints_the_token_last(world: World) -> None:
    """`coreline token create` prints the token alone on its last line; a clinic token
    without --clinic is refused with what to add."""
    created = _coreline("token", "create", "--role", "auditor", database_url=world.database_url)
    assert created.returncode == 0
    token = created.stdout.strip().splitlines()[-1]
    assert token.startswith("clt_")
    assert " " not in token
    with api_client(world.database_url) as client:
        assert client.get("/api/v1/sessions", headers=bearer(token)).status_code == 200
    refused = _coreline("token", "create", "--role", "clinic", database_url=world.database_url)
    assert refused.returncode == 2
    assert "--clinic" in refused.stderr
    stored = create_engine(world.database_url.replace("postgresql://", "postgresql+psycopg://"))
    with stored.connect() as connection:
        digests = connection.execute(text("SELECT digest FROM api_tokens")).scalars().all()
    stored.dispose()
    assert token not in digests  # only digests are stored


def _coreline(*args: str, database_url: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("CORELINE_")}
    env["CORELINE_DATABASE_URL"] = database_url
    return subprocess.run(
        [sys.executable, "-m", "services", *args],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip


def test_a_reassigned_device_keeps_its_past_with_its_old_clinic(
    client: TestClient, world: World
) -> None:
    """Moved from clinic B to clinic A, a device's history before the move stays B's:
    A sees only events that arrived since (none of B's session ids) and none of B's
    usage; B loses the device."""
    from schemas import seal, utc_text  # noqa: PLC0415
    from services.eventstore import open_event_store  # noqa: PLC0415

    headers = bearer(world.tokens["manufacturer"])
    moved = client.put(
        "/api/v1/devices/HP-000201/clinic", headers=headers, json={"clinic_id": CLINIC_A}
    )
    assert moved.status_code == 202
    project(world.database_url)
    b_sessions = {
        s["session_id"] for s in _walk(client, world, "/api/v1/sessions?device_id=HP-000201")
    }
    assert b_sessions
    before = _walk(client, world, "/api/v1/devices/HP-000201/events?limit=50", "clinic_a")
    assert before == []
    usage = "/api/v1/devices/HP-000201/usage?days=366"
    assert sum(day["sessions"] for day in _get(client, world, usage, "clinic_a")) == 0
    assert sum(day["sessions"] for day in _get(client, world, usage)) == len(b_sessions)
    store = open_event_store(world.database_url)
    [head] = store.read_stream("HP-000201", from_seq=world.event_counts["HP-000201"])
    later = seal({
        "event_id": "0e4a4f1e-8a7e-4a36-9d4a-3f1b7c1d2e01", "device_id": "HP-000201",
        "seq": head.seq + 1, "type": "fault.cleared", "occurred_at": utc_text(head.occurred_at),
        "schema_version": 1, "data": {"fault_code": "E-VAC-LOW"}, "prev_hash": head.hash,
    })  # fmt: skip
    store.append([later])
    store.close()
    seen = _walk(client, world, "/api/v1/devices/HP-000201/events?limit=50", "clinic_a")
    assert [event["seq"] for event in seen] == [head.seq + 1]
    everything = _walk(client, world, "/api/v1/devices/HP-000201/events?limit=500")
    assert len(everything) == head.seq + 1
    assert not any(session in str(everything[-1]) for session in b_sessions)
    assert (
        client.get(
            "/api/v1/devices/HP-000201", headers=bearer(world.tokens["clinic_b"])
        ).status_code
        == 404
    )
