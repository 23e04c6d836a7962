"""The audit log: ``GET /api/v1/audit-log`` and the ``/audit-log`` page list the
changes people made, newest first, filtered, paged, and scoped to what the reader
may see."""

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient

from services.api import Role, create_token
from services.api.deps import SESSION_COOKIE
from services.api.people import SecretBox, create_user, open_session
from services.api.token_changes import record_token_created
from services.eventstore import open_event_store
from services.projections.read_store import ReadModelStore
from tests.support.api_client import api_client, bearer

ALPHA, BRAVO = "clinic-alpha", "clinic-bravo"
LOG = "/api/v1/audit-log"


@dataclass
class Recorded:
    url: str
    client: TestClient
    tokens: dict[str, str]
    token_id: str
    """Of a token whose creation is on the record."""


@pytest.fixture(params=["sqlite_url", "postgres_url"])
def recorded(request: pytest.FixtureRequest) -> Iterator[Recorded]:
    """Two clinics' policy changes, the manufacturer's bounds, and a token's creation."""
    url: str = request.getfixturevalue(request.param)
    read_models = ReadModelStore(url)
    engine = read_models.engine
    tokens = {
        name: create_token(engine, role, clinic, name)[1]
        for name, role, clinic in (
            ("fleet-ops", Role.MANUFACTURER, None),
            ("desk-a", Role.CLINIC, ALPHA),
            ("desk-b", Role.CLINIC, BRAVO),
            ("quality", Role.AUDITOR, None),
            ("quality-a", Role.AUDITOR, ALPHA),
        )
    }
    made, _ = create_token(engine, Role.AUDITOR, None, "external-auditor")
    store = open_event_store(url)
    try:
        record_token_created(store, engine, made, "cli:ops@console")
    finally:
        store.close()
    read_models.close()
    with api_client(url) as client:
        changes: list[tuple[str, str, Any]] = [
            ("desk-a", f"/api/v1/clinics/{ALPHA}/policy", {"coverage_max_pct": 6}),
            ("desk-b", f"/api/v1/clinics/{BRAVO}/policy", {"coverage_max_pct": 7}),
            ("fleet-ops", "/api/v1/policy-bounds", {"coverage_max_pct": {"min": 2, "max": 15}}),
            ("desk-a", f"/api/v1/clinics/{ALPHA}/policy", {"coverage_max_pct": 5}),
        ]
        for name, path, body in changes:
            response = client.put(path, json=body, headers=bearer(tokens[name]))
            assert response.status_code == 200, response.text
        yield Recorded(url, client, tokens, made.token_id)


def _entries(recorded: Recorded, name: str, **query: Any) -> list[dict[str, Any]]:
    response = recorded.client.get(LOG, params=query, headers=bearer(recorded.tokens[name]))
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def test_fleet_wide_readers_see_every_change_newest_first(recorded: Recorded) -> None:
    """The manufacturer and a fleet-wide auditor see all five changes, newest first,
    each with its time, kind, author, subject and data (never a secret)."""
    for name in ("fleet-ops", "quality"):
        entries = _entries(recorded, name)
        assert [(entry["kind"], entry["subject"]) for entry in entries] == [
            ("policy.changed", f"clinic:{ALPHA}"),
            ("policy_bounds.changed", "fleet"),
            ("policy.changed", f"clinic:{BRAVO}"),
            ("policy.changed", f"clinic:{ALPHA}"),
            ("token.created", f"token:{recorded.token_id}"),
        ]
        times = [datetime.fromisoformat(entry["time"]) for entry in entries]
        assert times == sorted(times, reverse=True)
    newest = entries[0]
    assert "desk-a (clinic token" in newest["author"]
    assert newest["data"] == {
        "clinic_id": ALPHA, "overrides": {"coverage_max_pct": 5},
        "previous": {"coverage_max_pct": 6},
    }  # fmt: skip
    assert newest["clinic_id"] == ALPHA
    assert entries[-1]["author"] == "cli:ops@console"
    assert "by" not in entries[-1]["data"]


def test_the_log_filters_by_kind_author_subject_and_time(recorded: Recorded) -> None:
    """Each filter narrows the list to the changes it names."""
    kinds = {entry["kind"] for entry in _entries(recorded, "quality", kind="policy.changed")}
    assert kinds == {"policy.changed"}
    assert len(_entries(recorded, "quality", kind="policy.changed")) == 3
    assert [e["kind"] for e in _entries(recorded, "quality", kind="token.")] == ["token.created"]
    by_b = _entries(recorded, "quality", author="DESK-B")
    assert [entry["subject"] for entry in by_b] == [f"clinic:{BRAVO}"]
    alpha = _entries(recorded, "quality", subject=f"clinic:{ALPHA}")
    assert [entry["data"]["overrides"] for entry in alpha] == [
        {"coverage_max_pct": 5}, {"coverage_max_pct": 6},
    ]  # fmt: skip
    everything = _entries(recorded, "quality")
    middle = everything[3]["time"], everything[1]["time"]
    window = _entries(recorded, "quality", since=middle[0], until=middle[1])
    assert [entry["event_id"] for entry in window] == [e["event_id"] for e in everything[2:4]]
    assert _entries(recorded, "quality", kind="webhook.created") == []


def test_the_log_pages_with_a_cursor(recorded: Recorded) -> None:
    """Pages of two follow each other through ``next_cursor`` with nothing repeated or
    skipped, and a cursor the API never gave out is a 400."""
    headers = bearer(recorded.tokens["fleet-ops"])
    seen: list[str] = []
    cursor: str | None = None
    for _ in range(5):
        query: dict[str, Any] = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = recorded.client.get(LOG, params=query, headers=headers).json()
        seen += [entry["event_id"] for entry in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [entry["event_id"] for entry in _entries(recorded, "fleet-ops")]
    assert len(seen) == 5
    foreign = recorded.client.get(LOG, params={"cursor": "bm9wZQ"}, headers=headers)
    assert foreign.status_code == 400
    backwards = recorded.client.get(
        LOG, params={"since": "2030-01-01T00:00:00Z", "until": "2029-01-01T00:00:00Z"},
        headers=headers,
    )  # fmt: skip
    assert backwards.status_code == 400


def test_a_clinic_scoped_auditor_sees_only_its_clinics_changes(recorded: Recorded) -> None:
    """An auditor of one clinic sees that clinic's changes and nothing else, even when
    asking for another clinic's or the fleet's; clinic staff may not read the log."""
    own = _entries(recorded, "quality-a")
    assert [entry["subject"] for entry in own] == [f"clinic:{ALPHA}", f"clinic:{ALPHA}"]
    assert _entries(recorded, "quality-a", subject=f"clinic:{BRAVO}") == []
    assert _entries(recorded, "quality-a", subject="fleet") == []
    assert _entries(recorded, "quality-a", author="desk-b") == []
    for name in ("desk-a", "desk-b"):
        refused = recorded.client.get(LOG, headers=bearer(recorded.tokens[name]))
        assert refused.status_code == 403


def test_the_audit_log_page_shows_the_changes_to_the_manufacturer(recorded: Recorded) -> None:
    """A signed-in manufacturer gets the page, with every change, its author, and a
    nav link to it; it carries no inline script or style."""
    read_models = ReadModelStore(recorded.url)
    try:
        box = SecretBox(b"s" * 32)
        person = create_user(
            read_models.engine, box, "ops@maker.example", "Ops Lead", Role.MANUFACTURER
        ).user
        session_id = open_session(read_models.engine, person.user_id)
    finally:
        read_models.close()
    recorded.client.cookies.set(SESSION_COOKIE, session_id)
    page = recorded.client.get("/audit-log")
    assert page.status_code == 200, page.text
    html = page.text
    assert 'href="/audit-log"' in html
    assert html.count('data-kind="policy.changed"') == 3
    assert 'data-kind="policy_bounds.changed"' in html
    assert "cli:ops@console" in html
    assert "desk-b (clinic token" in html
    assert "<script>" not in html
    assert "style=" not in html
    narrowed = recorded.client.get("/audit-log", params={"kind": "token."})
    assert narrowed.text.count("data-kind=") == 1
