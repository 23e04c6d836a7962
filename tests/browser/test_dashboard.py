"""The dashboard in a real browser: what each role sees, a device's charts, handling an
alert until the projector folds it, the session CSV against the JSON API, and login."""

import csv
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page

from services.api.deps import SESSION_COOKIE
from tests.browser.conftest import Dashboard
from tests.support.accounts import Account
from tests.support.api_world import CLINIC_A, CLINIC_B

_LIVE_REFRESH_WAIT_MS = 15_000
_BAR_TITLE = re.compile(r"(\d{4}-\d{2}-\d{2}): (\d+) sessions, ([\d,]+) cores")


_signed_in: dict[tuple[str, str], str] = {}
"""Each account's session (its cookie's value) once it has signed in through the form: the
platform accepts an authenticator step once, so a second sign-in within the same 30 s
would have to wait for the next step."""


def log_in(page: Page, dashboard: Dashboard, who: str | Account) -> None:
    """Sign in through the form as a person would (e-mail, password, and the
    authenticator's code where the role needs one) and wait for where it leads; an
    account that signed in before carries on with its session while it lasts."""
    account = dashboard.accounts[who] if isinstance(who, str) else who
    login_url = dashboard.url("/login")
    kept = _signed_in.get((dashboard.base_url, account.email))
    if kept is not None:
        page.context.add_cookies(
            [{"name": SESSION_COOKIE, "value": kept, "url": dashboard.url("/")}]
        )
        page.goto(dashboard.url("/"))
        if not page.url.startswith(login_url):
            return
        page.context.clear_cookies()
    page.goto(login_url)
    page.fill("#email", account.email)
    page.fill("#password", account.password)
    page.fill("#code", account.fresh_code())
    page.click("form[action='/login'] button[type=submit]")
    page.wait_for_url(lambda url: url != login_url)
    for cookie in page.context.cookies():
        if cookie["name"] == SESSION_COOKIE:
            _signed_in[dashboard.base_url, account.email] = cookie["value"]


def api_get(dashboard: Dashboard, token: str, path: str) -> Any:
    response = httpx.get(
        dashboard.url(f"/api/v1{path}"), headers={"Authorization": f"Bearer {token}"}
    )
    response.raise_for_status()
    return response.json()


def test_clinic_sees_only_its_own_devices(page: Page, dashboard: Dashboard) -> None:
    """A clinic's fleet page lists exactly its devices and never names another clinic."""
    log_in(page, dashboard, "clinic_a")

    assert page.url == dashboard.url("/")
    rows = page.locator("table[data-testid=devices] tr[data-device]")
    listed = rows.evaluate_all("rows => rows.map(row => row.dataset.device)")
    assert sorted(listed) == ["HP-000101", "HP-000102"]
    assert page.locator("[data-role=clinic]").inner_text().endswith(CLINIC_A)
    html = page.content()
    assert CLINIC_B not in html
    assert "HP-000201" not in html
    assert "HP-000301" not in html


def test_clinic_cannot_open_another_clinics_device(page: Page, dashboard: Dashboard) -> None:
    """Another clinic's device page answers 404, exactly as a device that does not exist."""
    log_in(page, dashboard, "clinic_a")

    response = page.goto(dashboard.url("/devices/HP-000201"))

    assert response is not None
    assert response.status == 404
    assert page.locator("main h1").inner_text() == "404"
    assert page.locator("[data-testid=cartridge]").count() == 0
    assert CLINIC_B not in page.content()


def test_device_page_charts_usage_cartridge_and_faults(page: Page, dashboard: Dashboard) -> None:
    """A device page draws a bar per day matching the usage API, the cartridge's life bar
    at its used share, and the device's open fault."""
    token = dashboard.world.tokens["clinic_a"]
    log_in(page, dashboard, "clinic_a")
    page.goto(dashboard.url("/devices/HP-000101"))

    bars = page.locator("[data-testid=usage-chart] svg.chart rect.bar").evaluate_all(
        "bars => bars.map(bar => [bar.textContent, bar.getBBox().height])"
    )
    usage = api_get(dashboard, token, "/devices/HP-000101/usage?days=30")
    assert [_bar_facts(title) for title, _ in bars] == [
        (day["day"], day["sessions"], day["cores"]) for day in usage
    ]
    assert len(bars) == 30
    # The busiest day's bar spans the 144-unit plot; an empty chart draws hairlines.
    assert max(height for _, height in bars) == pytest.approx(144)

    used_pct = api_get(dashboard, token, "/devices/HP-000101")["cartridge"]["life_used_pct"]
    life = page.locator("[data-testid=cartridge] .lifebar")
    assert float(life.get_attribute("aria-valuenow") or "nan") == round(used_pct, 1)
    bar_box, fill_box = life.bounding_box(), life.locator("span").bounding_box()
    assert bar_box is not None
    assert fill_box is not None
    assert bar_box["width"] > 0
    assert fill_box["width"] / bar_box["width"] == pytest.approx(min(used_pct, 100) / 100, abs=0.01)

    faults = page.locator("[data-testid=faults]")
    assert "E-VAC-LOW" in faults.inner_text()
    assert "vacuum below 40 kPa" in faults.inner_text()


def test_acknowledged_alert_changes_once_folded(page: Page, dashboard: Dashboard) -> None:
    """Acknowledging an open alert on the inbox shows it acknowledged, by the person
    signed in, once the projector has folded the acknowledgement."""
    log_in(page, dashboard, "clinic_a")
    page.goto(dashboard.url("/alerts?status=all"))
    row = page.locator("tr[data-alert][data-status=open]").filter(has_text="device fault").first
    alert_id = row.get_attribute("data-alert")
    assert alert_id

    row.get_by_role("button", name="Acknowledge").click()
    page.wait_for_url(re.compile(r"/alerts\?status=all"))

    acknowledged = page.locator(f"tr[data-alert='{alert_id}'][data-status=acknowledged]")
    acknowledged.wait_for(timeout=_LIVE_REFRESH_WAIT_MS)
    email = dashboard.accounts["clinic_a"].email
    status = acknowledged.locator(".alert-status").inner_text()
    assert f"by Dana Ruiz <{email}> (clinic user u_" in status
    assert acknowledged.get_by_role("button").inner_text() == "Resolve"
    alert = api_get(dashboard, dashboard.world.tokens["clinic_a"], f"/alerts/{alert_id}")
    assert alert["status"] == "acknowledged"


def test_auditor_csv_matches_the_api(page: Page, dashboard: Dashboard, tmp_path: Path) -> None:
    """The auditor's sessions page lists sessions, and its CSV export carries the same
    counts, reconciliation and coverage as the JSON API for every session."""
    token = dashboard.world.tokens["auditor"]
    log_in(page, dashboard, "auditor")

    page.goto(dashboard.url("/sessions"))
    assert page.locator("[data-testid=sessions] tr[data-session]").count() > 0
    with page.expect_download() as download_info:
        page.locator("a[data-testid=csv]").click()
    saved = tmp_path / "sessions.csv"
    download_info.value.save_as(saved)

    with saved.open(newline="", encoding="utf-8") as text:
        exported = {row["session_id"]: row for row in csv.DictReader(text)}
    page_of_sessions = api_get(dashboard, token, "/sessions?limit=500")
    assert page_of_sessions["next_cursor"] is None  # every session is on this one page
    sessions = page_of_sessions["items"]
    assert len(sessions) > 0
    assert sorted(exported) == sorted(session["session_id"] for session in sessions)
    for session in sessions:
        row = exported[session["session_id"]]
        assert int(row["cores_counted"]) == session["cores_counted"], row
        assert _optional_int(row["cores_reported"]) == session["cores_reported"], row
        assert _optional_bool(row["reconciled"]) == session["reconciled"], row
        assert float(row["coverage_pct"]) == pytest.approx(session["coverage_pct"], abs=0.005), row


def test_unknown_account_is_refused(page: Page, dashboard: Dashboard) -> None:
    """A login that does not exist brings the sign-in page back with its error, sets
    no session, and the dashboard stays out of reach."""
    log_in(page, dashboard, Account("nobody@people.example", "a-password-of-no-one", None))

    assert page.url == dashboard.url("/login?error=refused")
    assert "not right" in page.get_by_role("alert").inner_text()
    assert page.locator("table[data-testid=devices]").count() == 0
    assert [cookie for cookie in page.context.cookies() if cookie["name"] == SESSION_COOKIE] == []
    page.goto(dashboard.url("/"))
    assert page.url.startswith(dashboard.url("/login"))
    assert page.locator("table[data-testid=devices]").count() == 0


def test_fleet_screenshot_as_manufacturer(page: Page, dashboard: Dashboard, tmp_path: Path) -> None:
    """The manufacturer's fleet page lists every device and renders to a non-empty PNG."""
    log_in(page, dashboard, "manufacturer")
    devices = page.locator("table[data-testid=devices] tr[data-device]")
    listed = devices.evaluate_all("rows => rows.map(row => row.dataset.device)")
    assert sorted(listed) == ["HP-000101", "HP-000102", "HP-000201", "HP-000301"]

    shot = tmp_path / "fleet.png"
    page.screenshot(path=shot, full_page=True)

    png = shot.read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(png) > 10_000


def _bar_facts(title: str) -> tuple[str, int, int]:
    """A bar's tooltip, ``2026-11-24: 3 sessions, 1,234 cores``, as (day, sessions, cores)."""
    matched = _BAR_TITLE.fullmatch(title)
    assert matched, title
    return matched[1], int(matched[2]), int(matched[3].replace(",", ""))


def _optional_int(cell: str) -> int | None:
    return None if cell == "" else int(cell)


def _optional_bool(cell: str) -> bool | None:
    return {"": None, "true": True, "false": False}[cell]
