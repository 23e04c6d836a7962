"""An alert's own page in a real browser: a cartridge wearing from 80 % to end of life
to overuse is one alert whose page shows each rung with its time, and the alert can
be resolved from its page without being acknowledged first; the Notifications page
saves a person's e-mail choice."""

from datetime import UTC, datetime, timedelta

from playwright.sync_api import Page, expect

from services.api import commands
from services.eventstore import open_event_store
from tests.browser.conftest import Dashboard, reload_until
from tests.browser.test_dashboard import log_in
from tests.support.api_world import CLINIC_A, HandpieceWriter

HANDPIECE = "HP-000880"
CARTRIDGE = "CT-880"
SESSION = "4c2d8e1a-7b3f-4a5e-9d6c-1f0e2b3a4c5d"


def _punch(writer: HandpieceWriter, actuations: int) -> None:
    start = writer.clock
    writer.append("cores.punched", {
        "session_id": SESSION, "cartridge_id": CARTRIDGE, "actuations": actuations,
        "cores": actuations, "depth_mm": 1.5, "window_start": _text(start),
        "window_end": _text(start + timedelta(seconds=1)),
    })  # fmt: skip


def _text(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def test_one_alert_escalates_with_its_history_and_resolves_from_its_page(
    page: Page, dashboard: Dashboard
) -> None:
    """80 %, end of life, overuse: one alert in the list, its page lists three rungs
    in order; Resolve on the page (no acknowledgement first) closes it."""
    store = open_event_store(dashboard.world.database_url)
    try:
        commands.register_device(store, HANDPIECE, "CX-2", "fleet-ops")
        commands.assign_device(store, HANDPIECE, CLINIC_A, "fleet-ops")
        writer = HandpieceWriter(
            store, HANDPIECE, clock=datetime.now(UTC) - timedelta(minutes=5), needles=1
        )
        writer.append("agent.started", {"firmware_version": "2.4.1", "agent_version": "1.0.0",
                                        "boot_id": "b-880"})  # fmt: skip
        writer.append("cartridge.installed", {
            "cartridge_id": CARTRIDGE, "lot": "L880", "needles": 1, "needle_gauge": 22,
            "core_diameter_mm": 0.5, "rated_actuations": 1000,
        })  # fmt: skip
        writer.append("session.started", {
            "session_id": SESSION, "treatment_area": "neck", "area_cm2": 2000.0,
            "operator_ref": "op-880", "cartridge_id": CARTRIDGE,
        })  # fmt: skip
        log_in(page, dashboard, "clinic_a")
        listed = f"/alerts?status=all&device_id={HANDPIECE}"
        _punch(writer, 800)
        reload_until(page, dashboard.url(listed), "tr[data-alert]")
        row = page.locator("tr[data-alert]")
        expect(row).to_have_count(1)
        alert_id = row.get_attribute("data-alert")
        assert alert_id
        _punch(writer, 150)
        reload_until(page, dashboard.url(f"/alerts/{alert_id}"), "tr[data-step=escalated]")
        _punch(writer, 60)
        reload_until(page, dashboard.url(f"/alerts/{alert_id}"), "tr[data-rule=cartridge_overuse]")
    finally:
        store.close()
    steps = page.locator("[data-testid=alert-history] tbody tr")
    expect(steps).to_have_count(3)
    assert [steps.nth(i).get_attribute("data-rule") for i in range(3)] == [
        "needle_life_low", "needle_end_of_life", "cartridge_overuse",
    ]  # fmt: skip
    assert [steps.nth(i).get_attribute("data-step") for i in range(3)] == [
        "raised", "escalated", "escalated",
    ]  # fmt: skip
    expect(page.locator("[data-testid=alert-state]")).to_have_attribute(
        "data-rule", "cartridge_overuse"
    )
    page.goto(dashboard.url(listed))
    expect(page.locator("tr[data-alert]")).to_have_count(1)  # never a parallel alert
    page.goto(dashboard.url(f"/alerts/{alert_id}"))
    page.fill("#resolve-note", "cartridge replaced")
    page.get_by_role("button", name="Resolve").click()
    reload_until(page, dashboard.url(f"/alerts/{alert_id}"), "tr[data-step=resolved]")
    expect(page.locator("[data-testid=alert-state]")).to_have_attribute("data-status", "resolved")
    expect(page.locator("tr[data-step=acknowledged]")).to_have_count(0)


def test_a_person_saves_which_alerts_they_get_by_email(page: Page, dashboard: Dashboard) -> None:
    """The Notifications page, linked from the navigation, keeps the severities ticked."""
    log_in(page, dashboard, "clinic_a")
    page.goto(dashboard.url("/alerts"))
    page.get_by_role("link", name="Notifications").click()
    page.get_by_label("critical").check()
    page.get_by_role("button", name="Save").click()
    expect(page.locator("[data-testid=saved]")).to_be_visible()
    expect(page.get_by_label("critical")).to_be_checked()
    expect(page.get_by_label("warning")).not_to_be_checked()
