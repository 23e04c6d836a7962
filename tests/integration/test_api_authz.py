"""The authorization matrix (DESIGN §9): every endpoint × every role × objects in and
out of the token's scope.  Expected statuses come from the table below, written from
the design, not from the code: 401 without a valid token, 403 for an action the role
may never take, 404 for an object outside the token's clinic, success otherwise.
And no response a clinic-scoped token receives carries another clinic's identifiers."""

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from services.config_delivery import ConfigDelivery
from services.config_delivery.database import open_engine
from services.eventstore import open_event_store
from services.merkle_log import LogKeeper, MerkleLog, create_key_file, load_signer
from tests.support.api_client import api_client, bearer
from tests.support.api_world import CLINIC_A, CLINIC_B, DEVICES, World, build_world
from tests.support.postgres import TemporaryPostgres

# What each role may do, from DESIGN §9 (and the clinic's own alert policy and webhooks).
MAY: dict[str, set[str]] = {
    "manufacturer": {"devices", "manage", "sessions", "alerts", "handle", "configure", "audit",
                     "dead_letters", "audit_log", "bounds", "read_bounds", "log", "evidence",
                     "device_config", "lock"},
    "clinic": {"devices", "sessions", "alerts", "handle", "configure", "audit", "read_bounds",
               "log", "lock"},
    "auditor": {"devices", "sessions", "audit", "audit_log", "log", "evidence"},
}  # fmt: skip
TOKENS = {  # token name → (role, clinic scope or None for the fleet)
    "manufacturer": ("manufacturer", None),
    "clinic_a": ("clinic", CLINIC_A),
    "clinic_b": ("clinic", CLINIC_B),
    "auditor": ("auditor", None),
    "auditor_a": ("auditor", CLINIC_A),
}
OWNERS = ("A", "B", "none")
_SEAL_KEY, _SEAL_KEY_ID = "CNP-gygiFv3tfROOz3lR_z_UEvM1AgeP9J612yG_SX8", "c237fe2fd2925b9b"
OWNER_CLINIC = {"A": CLINIC_A, "B": CLINIC_B, "none": None}


@dataclass(frozen=True)
class Objects:
    device: dict[str, str]
    session: dict[str, str]
    alert: dict[str, str]
    foreign: dict[str, set[str]]
    """Per clinic: every identifier (clinics, devices, sessions, alerts) of the others."""


@dataclass(frozen=True)
class Case:
    name: str
    method: str
    path: str
    permission: str
    owner: str | None  # the clinic the object belongs to; None: no object
    body: Any = None
    ok: frozenset[int] = frozenset({200})


def _objects(world: World) -> Objects:
    engine = create_engine(world.database_url.replace("postgresql://", "postgresql+psycopg://"))
    owner_of = {CLINIC_A: "A", CLINIC_B: "B", None: "none"}
    device: dict[str, str] = {}
    session: dict[str, str] = {}
    alert: dict[str, str] = {}
    ids: dict[str | None, set[str]] = {CLINIC_A: {CLINIC_A}, CLINIC_B: {CLINIC_B}, None: set()}
    with engine.connect() as connection:
        for device_id, clinic in DEVICES.items():
            device.setdefault(owner_of[clinic], device_id)
            ids[clinic].add(device_id)
        for session_id, clinic in connection.execute(
            text("SELECT session_id, clinic_id FROM read_sessions ORDER BY session_id")
        ):
            session.setdefault(owner_of[clinic], session_id)
            ids[clinic].add(session_id)
        for alert_id, clinic, status in connection.execute(
            text("SELECT alert_id, clinic_id, status FROM read_alerts ORDER BY alert_id")
        ):
            if status == "open":
                alert.setdefault(owner_of[clinic], alert_id)
            ids[clinic].add(alert_id)
    engine.dispose()
    foreign = {
        clinic: set().union(*(found for other, found in ids.items() if other != clinic))
        for clinic in (CLINIC_A, CLINIC_B)
    }
    return Objects(device, session, alert, foreign)


def _cases(objects: Objects) -> list[Case]:
    cases = [
        Case("health", "GET", "/healthz", "public", None),
        Case("readiness", "GET", "/readyz", "public", None, ok=frozenset({200, 503})),
        Case("list devices", "GET", "/api/v1/devices", "devices", None),
        Case("fleet", "GET", "/api/v1/fleet", "devices", None),
        Case("list sessions", "GET", "/api/v1/sessions", "sessions", None),
        Case("list alerts", "GET", "/api/v1/alerts?status=open", "alerts", None),
        Case("export", "GET", "/api/v1/audit/sessions.csv", "audit", None),
        Case("dead letters", "GET", "/api/v1/dead-letters", "dead_letters", None),
        Case("audit log", "GET", "/api/v1/audit-log", "audit_log", None),
        Case("policy bounds", "GET", "/api/v1/policy-bounds", "read_bounds", None),
        Case("set policy bounds", "PUT", "/api/v1/policy-bounds", "bounds", None, {}),
        Case("register", "POST", "/api/v1/devices", "manage", None,
             {"device_id": "HP-009999", "model": "CX-2"}, frozenset({202, 409})),
        Case("log checkpoint", "GET", "/api/v1/log/checkpoint", "log", None),
        Case("log checkpoint 1", "GET", "/api/v1/log/checkpoints/1", "log", None),
        Case("log key", "GET", "/api/v1/log/public-key", "log", None),
        Case("log consistency", "GET", "/api/v1/log/proofs/consistency?from=1&to=2", "log", None),
        # 409 once the matrix's own writes (a service, a key) outran the checkpoint.
        Case("evidence", "GET", f"/api/v1/audit/evidence?device_id={objects.device['A']}",
             "evidence", None, ok=frozenset({200, 409})),
        Case("fleet layer", "GET", "/api/v1/config/layers/fleet", "device_config", None),
        Case("set fleet layer", "PUT", "/api/v1/config/layers/fleet", "device_config", None, {}),
        Case("model layer", "GET", "/api/v1/config/layers/models/CL-200", "device_config", None),
        Case("set model layer", "PUT", "/api/v1/config/layers/models/CL-200", "device_config",
             None, {}),
        Case("clinic bounds", "GET", "/api/v1/config/clinic-bounds", "read_bounds", None),
        Case("set clinic bounds", "PUT", "/api/v1/config/clinic-bounds", "device_config", None,
             {"numeric": {}, "modes": {}}),
        Case("config devices", "GET", "/api/v1/fleet/config-devices", "devices", None),
        Case("identities", "GET", "/api/v1/identities", "manage", None),
        # Public key material, fetched by brokers and devices without a token (the
        # matrix's world has no fleet CA made: 404 names what is missing).
        Case("fleet CA", "GET", "/api/v1/fleet-ca/certificate", "public", None,
             ok=frozenset({404})),
        Case("fleet CA CRL", "GET", "/api/v1/fleet-ca/crl", "public", None,
             ok=frozenset({404})),
        # A device's own requests carry its proof, not a token: an empty one is a 422
        # for anyone.
        Case("enrol", "POST", "/api/v1/enrolment", "public", None, {}, frozenset({422})),
        Case("config convergence", "GET", "/api/v1/fleet/config-convergence", "devices", None),
        # A person's own e-mail choice: no token is a person, whatever its role.
        Case("my notifications", "GET", "/api/v1/me/notifications", "person", None),
        Case("set my notifications", "PUT", "/api/v1/me/notifications", "person", None,
             {"email_severities": ["critical"]}),
    ]  # fmt: skip
    for owner in OWNERS:
        device, session = objects.device[owner], objects.session[owner]
        alert, clinic = objects.alert[owner], OWNER_CLINIC[owner] or "clinic-nobody"
        cases += [
            Case(f"device {owner}", "GET", f"/api/v1/devices/{device}", "devices", owner),
            Case(f"usage {owner}", "GET", f"/api/v1/devices/{device}/usage", "devices", owner),
            Case(f"events {owner}", "GET", f"/api/v1/devices/{device}/events", "devices", owner),
            Case(f"assign {owner}", "PUT", f"/api/v1/devices/{device}/clinic", "manage", owner,
                 {"clinic_id": OWNER_CLINIC[owner]}, frozenset({202})),
            Case(f"service {owner}", "POST", f"/api/v1/devices/{device}/services", "manage",
                 owner, {"notes": "matrix"}, frozenset({202})),
            Case(f"keys {owner}", "GET", f"/api/v1/devices/{device}/keys", "manage", owner),
            Case(f"add key {owner}", "POST", f"/api/v1/devices/{device}/keys", "manage", owner,
                 {"public_key": _SEAL_KEY}, frozenset({202, 409})),
            Case(f"revoke key {owner}", "DELETE",
                 f"/api/v1/devices/{device}/keys/{_SEAL_KEY_ID}?reason=matrix", "manage", owner,
                 ok=frozenset({202, 404, 409})),
            Case(f"session {owner}", "GET", f"/api/v1/sessions/{session}", "sessions", owner),
            Case(f"sessions of {owner}", "GET", f"/api/v1/sessions?device_id={device}",
                 "sessions", None),
            Case(f"alert {owner}", "GET", f"/api/v1/alerts/{alert}", "alerts", owner),
            Case(f"deliveries {owner}", "GET", f"/api/v1/alerts/{alert}/deliveries", "alerts",
                 owner),
            Case(f"e-mails {owner}", "GET", f"/api/v1/alerts/{alert}/emails", "alerts", owner),
            Case(f"telemetry {owner}", "GET",
                 f"/api/v1/devices/{device}/telemetry?metric=temperature&range=24h", "devices",
                 owner),
            Case(f"ack {owner}", "POST", f"/api/v1/alerts/{alert}/acknowledge", "handle", owner,
                 {"note": "matrix"}, frozenset({202, 409})),
            Case(f"resolve {owner}", "POST", f"/api/v1/alerts/{alert}/resolve", "handle", owner,
                 {"note": "matrix"}, frozenset({202, 409})),
            Case(f"verify device {owner}", "GET", f"/api/v1/audit/verify?device_id={device}",
                 "audit", owner),
            Case(f"verify session {owner}", "GET",
                 f"/api/v1/audit/verify?session_id={session}", "audit", owner),
            Case(f"log inclusion {owner}", "GET",
                 f"/api/v1/log/proofs/inclusion?stream_id={device}&seq=1", "audit", owner),
            Case(f"device layer {owner}", "GET", f"/api/v1/config/layers/devices/{device}",
                 "device_config", None),
            Case(f"set device layer {owner}", "PUT", f"/api/v1/config/layers/devices/{device}",
                 "device_config", None, {}),
            # The unowned device is not registered: it has no configuration.
            Case(f"device config {owner}", "GET", f"/api/v1/devices/{device}/config", "devices",
                 owner, ok=frozenset({404} if owner == "none" else {200})),
            # Clinic staff may lock a device they hold; 409: not registered.
            Case(f"lock {owner}", "POST", f"/api/v1/devices/{device}/commands", "lock", owner,
                 {"cmd": "lock"}, frozenset({202, 409})),
            Case(f"commands {owner}", "GET", f"/api/v1/devices/{device}/commands", "devices",
                 owner),
            Case(f"identity {owner}", "GET", f"/api/v1/devices/{device}/identity", "devices",
                 owner),
            # Bodies a manufacturer's request is refused for (422), so that the matrix
            # claims, revokes and decommissions nothing the other cases rely on.
            Case(f"claim {owner}", "POST", f"/api/v1/devices/{device}/claims", "manage", owner,
                 {}, frozenset({422})),
            Case(f"decommission {owner}", "POST", f"/api/v1/devices/{device}/decommission",
                 "manage", owner, {}, frozenset({422})),
            Case(f"revoke certificate {owner}", "DELETE",
                 f"/api/v1/devices/{device}/certificates/{'0' * 64}", "manage", owner,
                 ok=frozenset({422})),
            Case(f"renew {owner}", "POST", f"/api/v1/devices/{device}/certificate", "public",
                 None, {}, frozenset({422})),
            Case(f"rotate seal key {owner}", "POST", f"/api/v1/devices/{device}/seal-key",
                 "public", None, {}, frozenset({422})),
            # No such command: the route answers 404 for it once scope and role pass.
            Case(f"command {owner}", "GET",
                 f"/api/v1/devices/{device}/commands/0b6c2a4e-6d1f-4c3e-9a7e-2f1f0c9d8e11",
                 "devices", owner, ok=frozenset({404})),
        ]  # fmt: skip
        if owner != "none":  # clinic resources exist only for clinics
            cases += [
                Case(f"policy {owner}", "GET", f"/api/v1/clinics/{clinic}/policy", "configure",
                     owner),
                Case(f"set policy {owner}", "PUT", f"/api/v1/clinics/{clinic}/policy",
                     "configure", owner, {"coverage_max_pct": 7.5}),
                Case(f"webhooks {owner}", "GET", f"/api/v1/clinics/{clinic}/webhooks",
                     "configure", owner),
                Case(f"add webhook {owner}", "POST", f"/api/v1/clinics/{clinic}/webhooks",
                     "configure", owner, {"url": "https://clinic.example/hook"},
                     frozenset({201})),
                Case(f"clinic layer {owner}", "GET", f"/api/v1/clinics/{clinic}/config",
                     "configure", owner),
                Case(f"set clinic layer {owner}", "PUT", f"/api/v1/clinics/{clinic}/config",
                     "configure", owner, {"recalled_lots": ["LOT-MATRIX"]}),
            ]  # fmt: skip
    return cases


def expected(token: str | None, case: Case) -> frozenset[int]:
    if case.permission == "public":
        return case.ok
    if token in (None, "bogus"):
        return frozenset({401})
    role, scope = TOKENS[token]
    if case.permission not in MAY[role]:
        return frozenset({403})
    if case.permission == "evidence" and scope is not None:  # fleet-wide tokens only
        return frozenset({403})
    if case.owner is not None and scope is not None and OWNER_CLINIC[case.owner] != scope:
        return frozenset({404})
    return case.ok


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def matrix_world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[World, TestClient, Objects]]:
    """One world per adapter, shared by the whole matrix (its writes are never projected,
    so every case sees the same read models)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('authz') / 'coreline.db'}"
    else:
        server: TemporaryPostgres = request.getfixturevalue("postgres_server")
        url = server.create_database(f"authz_{id(request)}", template="coreline_template")
    world = build_world(url)
    _deliver(url)
    key = tmp_path_factory.mktemp("log-key") / "coreline-log.key"
    _keep_log(url, key)
    with api_client(url, log_key=key) as client:
        yield world, client, _objects(world)


def _deliver(url: str) -> None:
    """What the projector's configuration delivery does: each registered device gets
    its desired configuration (no broker: nothing is published)."""
    store, engine = open_event_store(url), open_engine(url)
    delivery = ConfigDelivery(store, engine, None)
    while delivery.step():
        pass
    store.close()
    engine.dispose()


def _keep_log(url: str, key: Path) -> None:
    """What the projector's log keeper does: a checkpoint at size 1, then at the end."""
    create_key_file(key, "coreline/log/v1")
    store, merkle_log = open_event_store(url), MerkleLog.open(url)
    keeper = LogKeeper(store, merkle_log, load_signer(key, "coreline/log/v1"), batch_size=1)
    keeper.step()
    keeper.sign_if_due(now=True)
    keeper.catch_up()
    keeper.sign_if_due(now=True)
    store.close()
    merkle_log.close()


def _request(client: TestClient, token: str | None, case: Case, world: World) -> Any:
    headers = {} if token is None else bearer(world.tokens.get(token, "clt_bogus"))
    return client.request(case.method, case.path, headers=headers, json=case.body)


@pytest.mark.parametrize("token", [None, "bogus", *TOKENS])
def test_every_endpoint_answers_each_role_as_the_design_says(
    matrix_world: tuple[World, TestClient, Objects], token: str | None
) -> None:
    """Every endpoint's status for this token is the matrix's, and a clinic-scoped
    token's responses never name another clinic, its devices, sessions or alerts."""
    world, client, objects = matrix_world
    mismatches = []
    leaks = []
    for case in _cases(objects):
        response = _request(client, token, case, world)
        want = expected(token, case)
        if response.status_code not in want:
            mismatches.append(f"{case.name}: {response.status_code} (want {sorted(want)})")
        if response.status_code >= 400 and case.permission != "public":
            assert response.headers["content-type"].startswith("application/problem+json")
            assert response.json()["status"] == response.status_code
        scope = None if token in (None, "bogus") else TOKENS[token][1]
        if scope is not None:
            body = response.text
            leaks += [f"{case.name}: {found}" for found in objects.foreign[scope] if found in body]
    assert mismatches == []
    assert leaks == []


def test_the_matrix_covers_every_route(matrix_world: tuple[World, TestClient, Objects]) -> None:
    """No API route escapes the matrix: each one in the OpenAPI is exercised."""
    _, client, objects = matrix_world
    spec = client.get("/api/v1/openapi.json").json()
    documented = {
        (method.upper(), path) for path, methods in spec["paths"].items() for method in methods
    }
    exercised = set()
    for case in _cases(objects):
        concrete = case.path.split("?")[0]
        for method, template in documented:
            if method == case.method and _matches(template, concrete):
                exercised.add((method, template))
    # Rotating, switching off and deleting need a webhook to exist first:
    # test_one_webhook_follows_the_matrix covers them for every token.
    rotation = ("POST", "/api/v1/clinics/{clinic_id}/webhooks/{webhook_id}/rotate")
    one_webhook = "/api/v1/clinics/{clinic_id}/webhooks/{webhook_id}"
    missing = documented - exercised - {rotation, ("PATCH", one_webhook), ("DELETE", one_webhook)}
    assert missing == set()


def _matches(template: str, path: str) -> bool:
    wanted, given = template.split("/"), path.split("/")
    return len(wanted) == len(given) and all(
        part.startswith("{") or part == actual for part, actual in zip(wanted, given, strict=True)
    )


def test_webhook_rotation_is_scoped(matrix_world: tuple[World, TestClient, Objects]) -> None:
    """A clinic rotates its own webhook's secret (a new one each time); another clinic
    gets 404 for it, an auditor 403."""
    world, client, _ = matrix_world
    created = client.post(
        f"/api/v1/clinics/{CLINIC_A}/webhooks",
        headers=bearer(world.tokens["clinic_a"]),
        json={"url": "https://alpha.example/hook"},
    )
    assert created.status_code == 201
    hook, first_secret = created.json()["id"], created.json()["secret"]
    rotate = f"/api/v1/clinics/{CLINIC_A}/webhooks/{hook}/rotate"
    rotated = client.post(rotate, headers=bearer(world.tokens["clinic_a"]))
    assert rotated.status_code == 200
    assert rotated.json()["secret"] not in ("", first_secret)
    assert client.post(rotate, headers=bearer(world.tokens["clinic_b"])).status_code == 404
    as_b = f"/api/v1/clinics/{CLINIC_B}/webhooks/{hook}/rotate"
    assert client.post(as_b, headers=bearer(world.tokens["clinic_b"])).status_code == 404
    assert client.post(rotate, headers=bearer(world.tokens["auditor"])).status_code == 403


@pytest.mark.parametrize(("method", "suffix", "body", "done"), [
    ("POST", "/rotate", None, 200),
    ("PATCH", "", {"active": False}, 200),
    ("DELETE", "", None, 204),
])  # fmt: skip
def test_one_webhook_follows_the_matrix(
    matrix_world: tuple[World, TestClient, Objects],
    method: str,
    suffix: str,
    body: Any,
    done: int,
) -> None:
    """Rotating, switching off and deleting clinic A's webhook: 401 without a token,
    403 for auditors, 404 for clinic B (under either clinic's path), done for clinic
    A and the manufacturer."""
    world, client, _ = matrix_world
    owner = bearer(world.tokens["clinic_a"])
    expected = {None: 401, "auditor": 403, "auditor_a": 403, "clinic_b": 404,
                "clinic_a": done, "manufacturer": done}  # fmt: skip
    for name, status in expected.items():
        created = client.post(
            f"/api/v1/clinics/{CLINIC_A}/webhooks", headers=owner,
            json={"url": "https://alpha.example/hook"},
        )  # fmt: skip
        assert created.status_code == 201, created.text
        hook = created.json()["id"]
        headers = bearer(world.tokens[name]) if name else {}
        for clinic in (CLINIC_A, CLINIC_B) if name == "clinic_b" else (CLINIC_A,):
            path = f"/api/v1/clinics/{clinic}/webhooks/{hook}{suffix}"
            answer = client.request(method, path, headers=headers, json=body)
            assert answer.status_code == status, (name, clinic, answer.text)
        client.delete(f"/api/v1/clinics/{CLINIC_A}/webhooks/{hook}", headers=owner)
