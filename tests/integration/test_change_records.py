"""Every change a person makes is on the record (DESIGN §4): policy changes with
their author and previous values, the manufacturer's bounds on policies, and tokens
created and revoked on the command line, each in a verifiable change stream."""

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from services.api import Role, create_token
from services.eventstore import StoredEvent, open_event_store
from services.projections.read_store import ReadModelStore
from services.projector.replay import replay
from tests.support.api_client import api_client, bearer

CLINIC = "clinic-alpha"
POLICY_STREAM = f"config:clinic:{CLINIC}"


@dataclass
class Platform:
    url: str
    client: TestClient
    tokens: dict[str, str]


@pytest.fixture(params=["sqlite_url", "postgres_url"])
def platform(request: pytest.FixtureRequest) -> Iterator[Platform]:
    url: str = request.getfixturevalue(request.param)
    read_models = ReadModelStore(url)
    tokens = {
        name: create_token(read_models.engine, role, clinic, name)[1]
        for name, role, clinic in (
            ("fleet-ops", Role.MANUFACTURER, None),
            ("front-desk", Role.CLINIC, CLINIC),
            ("quality", Role.AUDITOR, None),
        )
    }
    read_models.close()
    with api_client(url) as client:
        yield Platform(url, client, tokens)


def _stream(url: str, stream_id: str) -> list[StoredEvent]:
    store = open_event_store(url)
    try:
        return store.read_stream(stream_id)
    finally:
        store.close()


def _data(event: StoredEvent) -> dict[str, Any]:
    data: dict[str, Any] = orjson.loads(event.body)["data"]
    return data


def _coreline(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("CORELINE_")}
    env["CORELINE_DATABASE_URL"] = url
    return subprocess.run(
        [sys.executable, "-m", "services", *args],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip


def test_a_policy_change_is_recorded_with_its_author_and_previous_values(
    platform: Platform,
) -> None:
    """Each policy PUT appends ``policy.changed`` naming the author, the new overrides
    and the ones they replaced, and is then in force; repeating one records nothing."""
    desk = bearer(platform.tokens["front-desk"])
    path = f"/api/v1/clinics/{CLINIC}/policy"
    first = platform.client.put(path, json={"coverage_max_pct": 6}, headers=desk)
    assert first.status_code == 200, first.text
    second = {"coverage_max_pct": 5, "needle_life_low_pct": 70}
    assert platform.client.put(path, json=second, headers=desk).status_code == 200
    assert platform.client.put(path, json=second, headers=desk).status_code == 200

    events = _stream(platform.url, POLICY_STREAM)
    assert [event.type for event in events] == ["policy.changed", "policy.changed"]
    assert {event.device_id for event in events} == {"PLATFORM"}
    latest = _data(events[1])
    assert latest["overrides"] == second
    assert latest["previous"] == {"coverage_max_pct": 6}
    assert latest["clinic_id"] == CLINIC
    assert "front-desk (clinic token" in latest["by"]
    assert _data(events[0])["previous"] == {}
    shown = platform.client.get(path, headers=desk).json()
    assert shown["overrides"] == second
    assert shown["effective"]["coverage_max_pct"] == 5


def test_a_clinic_policy_outside_the_bounds_is_refused_naming_key_value_and_bound(
    platform: Platform,
) -> None:
    """The default bounds refuse a coverage maximum of 100 % with a 422 that says why,
    and nothing is recorded or applied."""
    path = f"/api/v1/clinics/{CLINIC}/policy"
    desk = bearer(platform.tokens["front-desk"])
    refused = platform.client.put(path, json={"coverage_max_pct": 100}, headers=desk)
    assert refused.status_code == 422
    assert refused.json()["detail"] == (
        "coverage_max_pct: 100 is outside the manufacturer's bounds 1..20"
    )
    assert _stream(platform.url, POLICY_STREAM) == []
    assert platform.client.get(path, headers=desk).json()["overrides"] == {}


def test_only_the_manufacturer_sets_bounds_and_clinics_are_held_to_them(
    platform: Platform,
) -> None:
    """Clinic and auditor tokens get 403 on ``PUT /policy-bounds``; the manufacturer's
    bounds are recorded as ``policy_bounds.changed`` and hold for the next policy."""
    path = "/api/v1/policy-bounds"
    wanted = {"coverage_max_pct": {"min": 2, "max": 12}}
    for name in ("front-desk", "quality"):
        refused = platform.client.put(path, json=wanted, headers=bearer(platform.tokens[name]))
        assert refused.status_code == 403, name
    maker = bearer(platform.tokens["fleet-ops"])
    bad = platform.client.put(
        path, json={"coverage_max_pct": {"min": 10, "max": 12}}, headers=maker
    )
    assert bad.status_code == 422
    assert "leave out the default 8" in bad.json()["detail"]
    accepted = platform.client.put(path, json=wanted, headers=maker)
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["bounds"]["coverage_max_pct"] == {"min": 2.0, "max": 12.0}
    desk = bearer(platform.tokens["front-desk"])
    assert platform.client.get(path, headers=desk).json()["set_by_manufacturer"] == wanted

    policy = f"/api/v1/clinics/{CLINIC}/policy"
    over = platform.client.put(policy, json={"coverage_max_pct": 15}, headers=desk)
    assert over.status_code == 422
    assert (
        over.json()["detail"] == "coverage_max_pct: 15 is outside the manufacturer's bounds 2..12"
    )
    assert (
        platform.client.put(policy, json={"coverage_max_pct": 12}, headers=desk).status_code == 200
    )

    [recorded] = _stream(platform.url, "config:fleet")
    assert recorded.type == "policy_bounds.changed"
    assert _data(recorded)["bounds"] == {"coverage_max_pct": {"min": 2, "max": 12}}
    assert _data(recorded)["previous"] == {}
    assert "fleet-ops (manufacturer token" in _data(recorded)["by"]


def test_tokens_created_and_revoked_on_the_command_line_are_recorded_without_the_token(
    sqlite_url: str,
) -> None:
    """``coreline token create`` and ``revoke`` append ``token.created`` and
    ``token.revoked`` by ``cli:user@host``; neither event holds the token or its digest;
    and ``coreline verify --all`` verifies the change streams."""
    created = _coreline(sqlite_url, "token", "create", "--role", "clinic", "--clinic", CLINIC,
                        "--label", "reception")  # fmt: skip
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip().splitlines()[-1]
    found = re.search(r"token ([0-9a-f]{12}):", created.stderr)
    assert found is not None, created.stderr
    token_id = found.group(1)
    revoked = _coreline(sqlite_url, "token", "revoke", token_id)
    assert revoked.returncode == 0, revoked.stderr

    events = _stream(sqlite_url, f"identity:token:{token_id}")
    assert [event.type for event in events] == ["token.created", "token.revoked"]
    made = _data(events[0])
    assert made["token_id"] == token_id
    assert (made["role"], made["clinic_id"], made["label"]) == ("clinic", CLINIC, "reception")
    assert made["expires_at"] is not None
    assert re.fullmatch(r"cli:.+@.+", made["by"])
    assert _data(events[1]) == {"token_id": token_id, "by": made["by"]}
    secret_part = token.removeprefix("clt_")
    for event in events:
        assert secret_part.encode() not in event.body
    assert b"digest" not in b"".join(event.body for event in events)

    again = _coreline(sqlite_url, "token", "revoke", token_id)
    assert again.returncode == 2
    assert len(_stream(sqlite_url, f"identity:token:{token_id}")) == 2

    verified = _coreline(sqlite_url, "verify", "--all")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert f"identity:token:{token_id}" in verified.stdout


def test_change_streams_verify_and_never_become_devices(platform: Platform) -> None:
    """A clinic's and the fleet's change streams verify with ``coreline verify --all``,
    and a replay of the read models makes no device of the platform's own id."""
    maker = bearer(platform.tokens["fleet-ops"])
    desk = bearer(platform.tokens["front-desk"])
    bounds = {"needle_life_low_pct": {"min": 60, "max": 90}}
    assert platform.client.put("/api/v1/policy-bounds", json=bounds, headers=maker).is_success
    policy = f"/api/v1/clinics/{CLINIC}/policy"
    assert platform.client.put(policy, json={"needle_life_low_pct": 75}, headers=desk).is_success

    verified = _coreline(platform.url, "verify", "--all")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "config:fleet" in verified.stdout
    assert POLICY_STREAM in verified.stdout

    store = open_event_store(platform.url)
    try:
        replay(platform.url, store)
    finally:
        store.close()
    read_models = ReadModelStore(platform.url)
    try:
        assert read_models.projections(["PLATFORM"]) == {}
    finally:
        read_models.close()


def test_webhook_changes_are_recorded_with_their_author_and_never_a_secret(
    platform: Platform,
) -> None:
    """Adding, switching off and on, rotating and deleting a webhook each append their
    event to the clinic's configuration stream naming the author; no event holds a
    secret the API handed out."""
    desk = bearer(platform.tokens["front-desk"])
    hooks = f"/api/v1/clinics/{CLINIC}/webhooks"
    added = platform.client.post(hooks, json={"url": "https://alerts.example/in"}, headers=desk)
    assert added.status_code == 201, added.text
    webhook_id, secrets = added.json()["id"], [added.json()["secret"]]
    one = f"{hooks}/{webhook_id}"
    assert platform.client.patch(one, json={"active": False}, headers=desk).status_code == 200
    assert platform.client.patch(one, json={"active": False}, headers=desk).status_code == 200
    assert platform.client.patch(one, json={"active": True}, headers=desk).status_code == 200
    rotated = platform.client.post(f"{one}/rotate", headers=desk)
    assert rotated.status_code == 200, rotated.text
    secrets.append(rotated.json()["secret"])
    assert platform.client.delete(one, headers=desk).status_code == 204
    assert platform.client.delete(one, headers=desk).status_code == 404

    events = _stream(platform.url, POLICY_STREAM)
    assert [event.type for event in events] == [
        "webhook.created", "webhook.disabled", "webhook.enabled", "webhook.secret_rotated",
        "webhook.deleted",
    ]  # fmt: skip
    assert _data(events[0])["url"] == "https://alerts.example/in"
    assert {_data(event)["webhook_id"] for event in events} == {webhook_id}
    assert all("front-desk (clinic token" in _data(event)["by"] for event in events)
    for secret in secrets:
        assert all(secret.encode() not in event.body for event in events)


def test_accounts_made_and_changed_on_the_command_line_are_recorded(sqlite_url: str) -> None:
    """``coreline user create``, ``set-role``, ``disable``, ``disable --enable`` and
    ``reset-password`` append their events to the account's stream by
    ``cli:user@host``, the role change with what it replaced; never a password."""
    settings = ("--email", "dana@clinic.example", "--name", "Dana Ruiz")
    made = _coreline(sqlite_url, "user", "create", *settings, "--role", "clinic",
                     "--clinic", CLINIC)  # fmt: skip
    assert made.returncode == 0, made.stderr
    passwords = [line.removeprefix("password: ") for line in made.stdout.splitlines()
                 if line.startswith("password: ")]  # fmt: skip
    email = "dana@clinic.example"
    moved = _coreline(sqlite_url, "user", "set-role", email, "--role", "clinic",
                      "--clinic", "clinic-beta")  # fmt: skip
    assert moved.returncode == 0, moved.stderr
    refused = _coreline(sqlite_url, "user", "set-role", email, "--role", "clinic")
    assert refused.returncode != 0
    for args in (("disable", email), ("disable", email, "--enable"), ("reset-password", email)):
        changed = _coreline(sqlite_url, "user", *args)
        assert changed.returncode == 0, changed.stderr
        passwords += [line.removeprefix("password: ") for line in changed.stdout.splitlines()
                      if line.startswith("password: ")]  # fmt: skip

    store = open_event_store(sqlite_url)
    try:
        (stream_id,) = [s for s in store.stream_ids() if s.startswith("identity:user:")]
    finally:
        store.close()
    events = _stream(sqlite_url, stream_id)
    assert [event.type for event in events] == [
        "user.created", "user.role_changed", "user.disabled", "user.enabled",
        "user.password_reset",
    ]  # fmt: skip
    assert _data(events[0])["email"] == email
    role_change = _data(events[1])
    assert (role_change["clinic_id"], role_change["previous_clinic_id"]) == (
        "clinic-beta",
        CLINIC,
    )
    assert all(re.fullmatch(r"cli:.+@.+", _data(event)["by"]) for event in events)
    assert len(passwords) == 2
    for password in passwords:
        assert all(password.encode() not in event.body for event in events)
