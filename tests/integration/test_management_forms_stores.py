"""The management screens' forms on each database (SQLite and PostgreSQL): a clinic's
policy, handpiece settings and webhooks, the manufacturer's bounds, accounts and
tokens, each posted as the signed-in person's form and answered by the API and the
audit log with that person as author."""

import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.support.accounts import Account, create_accounts, csrf_token, sign_in
from tests.support.api_client import api_client, bearer
from tests.support.api_world import CLINIC_A, World, build_world


@pytest.fixture
def world(store_url: str) -> World:
    """A short day of the two-clinic fleet, on each adapter."""
    return build_world(store_url, hours=1.0)


@pytest.fixture
def people(world: World) -> dict[str, Account]:
    return create_accounts(world.database_url)


def _signed_in(world: World, account: Account) -> Iterator[TestClient]:
    with api_client(world.database_url) as client:
        assert sign_in(client, account).status_code == 303
        yield client


@pytest.fixture
def clinic(world: World, people: dict[str, Account]) -> Iterator[TestClient]:
    yield from _signed_in(world, people["clinic_a"])


@pytest.fixture
def manufacturer(world: World, people: dict[str, Account]) -> Iterator[TestClient]:
    yield from _signed_in(world, people["manufacturer"])


def _post(client: TestClient, page: str, action: str, fields: dict[str, str]) -> Any:
    """Post ``fields`` as the form of ``page`` would, with its CSRF token."""
    token = csrf_token(client.get(page).text)
    return client.post(action, data={"csrf_token": token, **fields}, follow_redirects=False)


def _audit(client: TestClient, world: World, query: str) -> list[dict[str, Any]]:
    answer = client.get(f"/api/v1/audit-log?{query}", headers=bearer(world.tokens["manufacturer"]))
    assert answer.status_code == 200, answer.text
    entries: list[dict[str, Any]] = answer.json()["items"]
    return entries


def test_a_clinics_policy_and_webhooks_on_each_store(
    clinic: TestClient, world: World, people: dict[str, Account]
) -> None:
    """Thresholds, handpiece settings and a webhook's life (add, rotate, switch off,
    delete), each recorded with the clinic's person as author; an out-of-bounds value
    is a 422 that records nothing."""
    page = f"/manage/clinics/{CLINIC_A}/policy"
    refused = _post(clinic, page, f"{page}/alerts", {"coverage_max_pct": "50"})
    assert refused.status_code == 422
    assert "outside the manufacturer&#39;s bounds 1..20" in refused.text
    assert _audit(clinic, world, f"subject=clinic:{CLINIC_A}") == []

    assert _post(clinic, page, f"{page}/alerts", {"coverage_max_pct": "7"}).status_code == 303
    devices = {"cartridge_life_mode": "block"}
    assert _post(clinic, page, f"{page}/devices", devices).status_code == 303
    policy = clinic.get(
        f"/api/v1/clinics/{CLINIC_A}/policy", headers=bearer(world.tokens["clinic_a"])
    )
    assert policy.json()["overrides"] == {"coverage_max_pct": 7}

    hooks = f"/manage/clinics/{CLINIC_A}/webhooks"
    added = _post(clinic, hooks, hooks, {"url": "https://hooks.alpha-clinic.example/alerts"})
    assert added.status_code == 201
    webhook_id = re.search(r'data-webhook="([^"]+)"', added.text)
    assert webhook_id is not None
    hook = f"{hooks}/{webhook_id.group(1)}"
    assert _post(clinic, hooks, f"{hook}/rotate", {}).status_code == 200
    assert _post(clinic, hooks, f"{hook}/active", {"active": "off"}).status_code == 303
    assert _post(clinic, hooks, f"{hook}/delete", {}).status_code == 303
    listed = clinic.get(f"/api/v1/clinics/{CLINIC_A}/webhooks",
                        headers=bearer(world.tokens["clinic_a"]))  # fmt: skip
    assert listed.json() == []

    entries = _audit(clinic, world, f"subject=clinic:{CLINIC_A}")
    assert [entry["kind"] for entry in entries] == [
        "webhook.deleted", "webhook.disabled", "webhook.secret_rotated", "webhook.created",
        "device_config.changed", "policy.changed",
    ]  # fmt: skip
    assert all(people["clinic_a"].email in entry["author"] for entry in entries)


def test_the_manufacturers_bounds_accounts_and_tokens_on_each_store(
    manufacturer: TestClient, world: World, people: dict[str, Account]
) -> None:
    """Bounds, an account (created, disabled) and a token (created, revoked), each
    recorded with the manufacturer's person as author; a clinic cannot post them."""
    bounds = {"coverage_max_pct.min": "2", "coverage_max_pct.max": "12"}
    assert _post(manufacturer, "/manage/policy", "/manage/policy-bounds", bounds).status_code == 303
    people_page = "/manage/people"
    created = _post(manufacturer, people_page, "/manage/people/users", {
        "email": "kim@alpha-clinic.example", "display_name": "Kim", "role": "clinic",
        "clinic_id": CLINIC_A,
    })  # fmt: skip
    assert created.status_code == 201
    user_id = re.search(r'data-user="([^"]+)" data-email="kim@alpha-clinic.example"', created.text)
    assert user_id is not None
    disabled = _post(manufacturer, people_page, f"/manage/people/users/{user_id.group(1)}/disable",
                     {"enable": "no"})  # fmt: skip
    assert disabled.status_code == 303
    token = _post(manufacturer, people_page, "/manage/people/tokens",
                  {"role": "auditor", "label": "quality desk", "expires_in": "7d"})  # fmt: skip
    assert token.status_code == 201
    shown = re.search(r'data-testid="token">([^<]+)<', token.text)
    assert shown is not None
    assert manufacturer.get("/api/v1/sessions", headers=bearer(shown.group(1))).status_code == 200
    token_id = re.search(r'data-token="([^"]+)" data-state="live">\s*<th scope="row">quality desk',
                         manufacturer.get(people_page).text)  # fmt: skip
    assert token_id is not None
    revoked = _post(
        manufacturer, people_page, f"/manage/people/tokens/{token_id.group(1)}/revoke", {}
    )
    assert revoked.status_code == 303
    assert manufacturer.get("/api/v1/sessions", headers=bearer(shown.group(1))).status_code == 401

    email = people["manufacturer"].email
    for query, kinds in [
        ("subject=fleet", ["policy_bounds.changed"]),
        (f"subject=user:{user_id.group(1)}", ["user.disabled", "user.created"]),
        (f"subject=token:{token_id.group(1)}", ["token.revoked", "token.created"]),
    ]:
        entries = _audit(manufacturer, world, query)
        assert [entry["kind"] for entry in entries] == kinds
        assert all(email in entry["author"] for entry in entries)

    with api_client(world.database_url) as clinic:
        assert sign_in(clinic, people["clinic_a"]).status_code == 303
        page = f"/manage/clinics/{CLINIC_A}/policy"
        assert (
            _post(clinic, page, "/manage/people/tokens", {"role": "manufacturer"}).status_code
            == 403
        )
        assert _post(clinic, page, "/manage/policy-bounds", {}).status_code == 403
