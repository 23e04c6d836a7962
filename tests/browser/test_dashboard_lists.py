"""The dashboard's lists over a 1,000-device fleet in a real browser: paging past a
hundred rows by cursor, search and filters agreeing with the API, times in the
viewer's zone and named, each role's home, and a device that never connected."""

from collections.abc import Iterator
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from playwright.sync_api import Page, expect

from services.alerts.store import set_policy
from services.api import Role
from services.api.tokens import create_token
from services.eventstore import upgrade_schema
from services.projections.read_store import ReadModelStore
from tests.browser.conftest import Dashboard
from tests.browser.test_dashboard import log_in
from tests.support.accounts import create_accounts
from tests.support.api_client import MASTER_KEY
from tests.support.api_world import CLINIC_A, World
from tests.support.list_fleet import NEVER_CONNECTED, load_list_fleet
from tests.support.platform_processes import serving_api
from tests.support.postgres import free_port

BERLIN = "Europe/Berlin"


@pytest.fixture(scope="module")
def fleet_dashboard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dashboard]:
    """1,000 devices, 3,000 sessions and 400 alerts written straight into a SQLite
    file's read models (no projector: nothing folds over them), clinic A's policy
    naming Berlin's zone, and ``coreline api`` serving it."""
    database_url = f"sqlite:///{tmp_path_factory.mktemp('lists') / 'coreline.db'}"
    upgrade_schema(database_url)
    read_models = ReadModelStore(database_url)
    world = World(database_url)
    try:
        load_list_fleet(read_models.engine, devices=1000, sessions=3000, alerts=400)
        for name, role, clinic in (
            ("manufacturer", Role.MANUFACTURER, None),
            ("clinic_a", Role.CLINIC, CLINIC_A),
            ("auditor", Role.AUDITOR, None),
        ):
            _, world.tokens[name] = create_token(read_models.engine, role, clinic, name)
        set_policy(read_models.engine, CLINIC_A, {"time_zone": BERLIN})
    finally:
        read_models.close()
    accounts = create_accounts(database_url, MASTER_KEY)
    port = free_port()
    log_path = tmp_path_factory.mktemp("lists-api") / "api.log"
    with serving_api(
        port, log_path, database_url=database_url, webhook_master_key=MASTER_KEY.decode()
    ):
        yield Dashboard(f"http://127.0.0.1:{port}", world, accounts)


def _api(dashboard: Dashboard, token: str, path: str) -> Any:
    response = httpx.get(
        dashboard.url(f"/api/v1{path}"),
        headers={"Authorization": f"Bearer {dashboard.world.tokens[token]}"},
    )
    response.raise_for_status()
    return response.json()


def _walk(dashboard: Dashboard, token: str, path: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        joiner = "&" if "?" in path else "?"
        page = _api(
            dashboard, token, f"{path}{joiner}limit=500" + (f"&cursor={cursor}" if cursor else "")
        )
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items


def _listed(page: Page, table: str, key: str) -> list[str]:
    rows = page.locator(f"table[data-testid={table}] tr[data-{key}]")
    listed: list[str] = rows.evaluate_all(f"rows => rows.map(row => row.dataset.{key})")
    return listed


def test_manufacturer_pages_devices_past_a_hundred(page: Page, fleet_dashboard: Dashboard) -> None:
    """Next and previous walk the device list a hundred at a time, in the API's order."""
    log_in(page, fleet_dashboard, "manufacturer")
    every = [item["device_id"] for item in _walk(fleet_dashboard, "manufacturer", "/devices")]
    assert len(every) == 1002

    page.goto(fleet_dashboard.url("/devices"))
    assert _listed(page, "devices", "device") == every[:100]
    expect(page.get_by_test_id("page-number")).to_have_text("page 1")

    page.get_by_test_id("next-page").click()
    expect(page.get_by_test_id("page-number")).to_have_text("page 2")
    assert _listed(page, "devices", "device") == every[100:200]
    page.get_by_test_id("next-page").click()
    assert _listed(page, "devices", "device") == every[200:300]

    page.get_by_test_id("previous-page").click()
    expect(page.get_by_test_id("page-number")).to_have_text("page 2")
    assert _listed(page, "devices", "device") == every[100:200]
    page.get_by_test_id("previous-page").click()
    assert _listed(page, "devices", "device") == every[:100]
    assert page.get_by_test_id("previous-page").count() == 0


def test_device_search_and_filter_agree_with_the_api(
    page: Page, fleet_dashboard: Dashboard
) -> None:
    log_in(page, fleet_dashboard, "manufacturer")
    page.goto(fleet_dashboard.url("/devices"))

    page.get_by_label("Device id or serial starts with").fill("hp-0003")
    page.get_by_label("Status").select_option("cartridge_low")
    page.get_by_role("button", name="Show").click()

    expected = _walk(fleet_dashboard, "manufacturer", "/devices?q=HP-0003&status=cartridge_low")
    assert expected
    assert _listed(page, "devices", "device") == [item["device_id"] for item in expected]
    assert all(device.startswith("HP-0003") for device in _listed(page, "devices", "device"))


def test_clinic_home_counts_agree_with_the_api(page: Page, fleet_dashboard: Dashboard) -> None:
    """Each "needs attention" count is the length of the list its link opens, as the
    API answers the same filter for the clinic."""
    log_in(page, fleet_dashboard, "clinic_a")
    assert page.url == fleet_dashboard.url("/")

    def count(testid: str) -> int:
        return int(page.get_by_test_id(testid).locator(".count").inner_text().rstrip("+"))

    def total(path: str) -> int:
        return len(_walk(fleet_dashboard, "clinic_a", path))

    assert count("attention-open-alerts") == total("/alerts?status=open") > 0
    assert count("attention-cartridges-exhausted") == total("/devices?status=cartridge_exhausted")
    assert count("attention-cartridges-low") == total("/devices?status=cartridge_low") > 0
    assert count("attention-devices-offline") == total("/devices?status=offline") > 0
    flagged = total("/sessions?flagged=true")
    assert count("attention-flagged-sessions") == flagged > 0

    page.get_by_test_id("attention-flagged-sessions").click()
    listed = _listed(page, "sessions", "session")
    assert len(listed) == min(flagged, 100)
    assert page.get_by_label("unreconciled or broken only").is_checked()


def test_clinic_sees_times_in_its_zone_named(page: Page, fleet_dashboard: Dashboard) -> None:
    """Clinic A's policy names Berlin: every time shows in Berlin time with its zone,
    and the page says which clock it uses; alerts page past a hundred."""
    log_in(page, fleet_dashboard, "clinic_a")
    page.goto(fleet_dashboard.url("/alerts?status=all"))

    expect(page.get_by_test_id("time-zone")).to_contain_text(f"Times in {BERLIN}")
    alerts = _walk(fleet_dashboard, "clinic_a", "/alerts")
    assert len(alerts) > 100
    assert _listed(page, "alerts", "alert") == [item["alert_id"] for item in alerts[:100]]
    first = page.locator("table[data-testid=alerts] tr[data-alert] time").first
    raised = datetime.fromisoformat(alerts[0]["raised_at"]).astimezone(ZoneInfo(BERLIN))
    assert first.inner_text() == f"{raised:%Y-%m-%d %H:%M} {raised:%Z}"
    assert raised.strftime("%Z") in {"CET", "CEST"}

    page.get_by_test_id("next-page").click()
    assert _listed(page, "alerts", "alert") == [item["alert_id"] for item in alerts[100:200]]
    page.get_by_label("Severity").select_option("critical")
    page.get_by_role("button", name="Show").click()
    critical = [item["alert_id"] for item in alerts if item["severity"] == "critical"]
    assert _listed(page, "alerts", "alert") == critical[:100]


def test_auditor_lands_on_sessions_and_picks_a_zone(page: Page, fleet_dashboard: Dashboard) -> None:
    """An auditor starts at the sessions, in UTC, and may choose another zone: the
    times then show in it, named, through the pages."""
    log_in(page, fleet_dashboard, "auditor")
    page.goto(fleet_dashboard.url("/"))
    assert page.url == fleet_dashboard.url("/sessions")
    expect(page.get_by_test_id("time-zone")).to_contain_text("Times in UTC")

    page.get_by_test_id("time-zone").get_by_role("link", name="change").click()
    page.get_by_label("IANA time zone").fill("America/New_York")
    page.get_by_role("button", name="Use this zone").click()
    page.wait_for_url(fleet_dashboard.url("/sessions"))

    expect(page.get_by_test_id("time-zone")).to_contain_text("Times in America/New_York")
    sessions = _walk(fleet_dashboard, "auditor", "/sessions")
    assert len(sessions) == 3000
    page.get_by_test_id("next-page").click()
    assert _listed(page, "sessions", "session") == [s["session_id"] for s in sessions[100:200]]
    started = datetime.fromisoformat(sessions[100]["started_at"])
    shown = started.astimezone(ZoneInfo("America/New_York"))
    cell = page.locator("table[data-testid=sessions] tr[data-session] time").first
    assert cell.inner_text() == f"{shown:%Y-%m-%d %H:%M} {shown:%Z}"
    assert cell.get_attribute("title") == f"{started:%Y-%m-%d %H:%M:%S} UTC"


def test_session_search_by_device(page: Page, fleet_dashboard: Dashboard) -> None:
    log_in(page, fleet_dashboard, "auditor")
    page.goto(fleet_dashboard.url("/sessions"))
    page.get_by_label("Session id, device id, cartridge or lot starts with").fill("HP-00042")
    page.get_by_role("button", name="Show").click()

    expected = _walk(fleet_dashboard, "auditor", "/sessions?q=HP-00042")
    assert expected
    assert _listed(page, "sessions", "session") == [s["session_id"] for s in expected[:100]]


def test_never_connected_device_is_said_so(page: Page, fleet_dashboard: Dashboard) -> None:
    """A device registered and assigned but never heard from: no "ok", no verified
    chain, no usage chart."""
    log_in(page, fleet_dashboard, "clinic_a")
    device = NEVER_CONNECTED[0]
    page.goto(fleet_dashboard.url(f"/devices/{device}"))

    expect(page.locator("main h1")).to_contain_text("never connected")
    assert page.get_by_test_id("never-connected").count() == 1
    meta = page.locator("p.meta").inner_text()
    assert "verified" not in meta
    assert "ok" not in page.locator("main h1").inner_text().split()
    assert page.get_by_test_id("usage-chart").count() == 0

    page.goto(fleet_dashboard.url(f"/devices?q={device}"))
    row = page.locator(f"tr[data-device='{device}']")
    expect(row.locator("[data-status=never_connected]")).to_have_text("never connected")


def test_usage_chart_has_axes_and_units(page: Page, fleet_dashboard: Dashboard) -> None:
    """A device that worked draws its chart on labelled axes: cores/day and dates."""
    log_in(page, fleet_dashboard, "manufacturer")
    newest = _api(fleet_dashboard, "manufacturer", "/sessions?limit=1")["items"][0]
    page.goto(fleet_dashboard.url(f"/devices/{newest['device_id']}"))
    chart = page.locator("[data-testid=usage-chart] svg.chart")

    expect(chart.locator("text.axis-title")).to_have_text("cores/day")
    assert chart.locator("line.axis-line").count() == 2
    ticks = chart.locator("text.end").all_text_contents()
    assert ticks[0] == "0"
    assert len(ticks) >= 2
    dates = chart.locator("text.axis:not(.end)").all_text_contents()
    assert len(dates) >= 5
    assert all(len(label) == 5 and label[2] == "-" for label in dates)  # MM-DD
