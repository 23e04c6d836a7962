"""The manufacturer's service and assignment screens in a real browser (register,
assign, record a service visit, each recorded as a platform event naming the person),
their precise refusals of bad input, and a handpiece's safety interlocks as the
device page and the fleet overview show them."""

from datetime import UTC, datetime, timedelta
from datetime import time as clock_time
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from services.eventstore import open_event_store
from tests.browser.conftest import Dashboard, reload_until
from tests.browser.test_dashboard import api_get, log_in
from tests.support import api_world
from tests.support.api_world import CLINIC_A, HandpieceWriter, World, build_world

LOCKED_DEVICE = "HP-000401"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    """The dashboard's two-clinic world, plus a handpiece of clinic A whose stream holds
    a refused recalled cartridge, a spent-cartridge warning and a lock by command."""
    database_url = f"sqlite:///{tmp_path_factory.mktemp('management') / 'coreline.db'}"
    yesterday = datetime.now(UTC).date() - timedelta(days=1)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(api_world, "START", datetime.combine(yesterday, clock_time(8), UTC))
        built = build_world(database_url)
    store = open_event_store(database_url)
    try:
        from services.api import commands  # noqa: PLC0415

        commands.register_device(store, LOCKED_DEVICE, "CX-2", "fleet-ops")
        commands.assign_device(store, LOCKED_DEVICE, CLINIC_A, "fleet-ops")
        writer = HandpieceWriter(
            store, LOCKED_DEVICE, clock=datetime.combine(yesterday, clock_time(9), UTC)
        )
        writer.append("agent.started", {"firmware_version": "2.4.1", "agent_version": "1.0.0",
                                        "boot_id": "boot-1"})  # fmt: skip
        writer.append("interlock.engaged", {
            "interlock": "recalled_lot", "mode": "block", "cartridge_id": "CT-RECALLED",
            "lot": "L2607B", "reason": "cartridge CT-RECALLED: lot L2607B is recalled",
        })  # fmt: skip
        writer.install_cartridge("CT-GOOD", "L2608A")
        writer.append("interlock.engaged", {
            "interlock": "cartridge_life", "mode": "warn", "cartridge_id": "CT-GOOD",
            "lot": "L2608A", "reason": "cartridge CT-GOOD has made 100,000 of its 100,000 "
            "rated actuations",
        })  # fmt: skip
        writer.append("interlock.engaged", {"interlock": "locked", "mode": "block",
                                            "cartridge_id": None, "lot": None,
                                            "reason": "locked by command"})  # fmt: skip
    finally:
        store.close()
    return built


def test_device_page_shows_the_interlocks_the_handpiece_recorded(
    page: Page, dashboard: Dashboard
) -> None:
    """The device page says the handpiece is locked, lists each engaged interlock with
    its mode, reason and seq, counts refusals and warnings, and names the refused
    cartridge; the fleet overview counts the locked device and its refusals."""
    log_in(page, dashboard, "clinic_a")
    reload_until(page, dashboard.url(f"/devices/{LOCKED_DEVICE}"), "[data-testid=locked]")

    card = page.locator("[data-testid=interlocks]")
    expect(card.locator("[data-testid=locked]")).to_have_text("locked")
    expect(card.locator("[data-interlock=locked]")).to_contain_text("locked · block")
    expect(card.locator("[data-interlock=locked]")).to_contain_text("locked by command")
    expect(card.locator("[data-interlock=cartridge_life]")).to_contain_text("warn")
    expect(card.locator("[data-interlock=recalled_lot]")).to_have_count(0)
    expect(card).to_contain_text("2 refusals and 1 warning recorded")
    expect(card).to_contain_text("last refused cartridge CT-RECALLED (lot L2607B)")

    page.goto(dashboard.url("/"))
    expect(page.locator("[data-testid=locked-devices] .count")).to_have_text("1")
    expect(page.locator("[data-testid=interlock-refusals] .count")).to_have_text("2")
    overview = api_get(dashboard, dashboard.world.tokens["clinic_a"], "/fleet")
    assert (overview["locked_devices"], overview["interlock_refusals"]) == (1, 2)
    other = api_get(dashboard, dashboard.world.tokens["clinic_b"], "/fleet")
    assert (other["locked_devices"], other["interlock_refusals"]) == (0, 0)
    detail = api_get(dashboard, dashboard.world.tokens["clinic_a"], f"/devices/{LOCKED_DEVICE}")
    assert [held["interlock"] for held in detail["interlocks"]["active"]] == [
        "cartridge_life", "locked"
    ]  # fmt: skip


def test_register_and_assign_a_device(page: Page, dashboard: Dashboard) -> None:
    """Registering a serial with a clinic records ``device.registered`` and
    ``device.assigned`` by the signed-in person; reassigning it records another; the
    history lists them newest first."""
    log_in(page, dashboard, "manufacturer")
    page.click("nav a[href='/manage/devices']")
    form = page.locator("[data-testid=register-form]")
    form.locator("input[name=device_id]").fill("HP-000777")
    form.locator("input[name=model]").fill("CX-3")
    form.locator("input[name=clinic_id]").fill(CLINIC_A)
    form.locator("button").click()

    page.wait_for_url(dashboard.url("/manage/devices/HP-000777?done=registered"))
    expect(page.locator("[data-testid=done]")).to_have_text("Registered.")
    history = page.locator("[data-testid=history] tr[data-type]")
    expect(history).to_have_count(2)
    assert history.evaluate_all("rows => rows.map(row => row.dataset.type)") == [
        "device.assigned", "device.registered"
    ]  # fmt: skip
    manufacturer = dashboard.accounts["manufacturer"].email
    expect(history.first).to_contain_text(manufacturer)

    page.fill("[data-testid=assign-form] input[name=clinic_id]", "clinic-charlie")
    page.click("[data-testid=assign-form] button")
    page.wait_for_url(dashboard.url("/manage/devices/HP-000777?done=assigned"))
    expect(history.first).to_contain_text("to clinic-charlie")
    reload_until(page, dashboard.url("/manage/devices/HP-000777"),
                "[data-testid=clinic]:text('clinic-charlie')")  # fmt: skip
    expect(page.locator("[data-testid=clinic]")).to_have_text("clinic-charlie")


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"device_id": "hp 12", "model": "CX-3"}, "Serial 'hp 12': capital letters"),
        ({"device_id": "HP-000778", "model": ""}, "Model: 1 to 64 characters."),
        ({"device_id": "HP-000778", "model": "CX-3", "clinic_id": "no spaces"}, "Clinic"),
        ({"device_id": "HP-000101", "model": "CX-3"}, "HP-000101 is registered already"),
    ],
)
def test_bad_registrations_are_refused_precisely_and_change_nothing(
    page: Page, dashboard: Dashboard, fields: dict[str, str], problem: str
) -> None:
    """A malformed serial, an empty model, a malformed clinic or a serial registered
    already is refused with a message saying so, and nothing is recorded."""
    store = open_event_store(dashboard.world.database_url)
    try:
        before = store.head("registry:HP-000778"), store.head("registry:HP-000101")
    finally:
        store.close()
    log_in(page, dashboard, "manufacturer")
    page.goto(dashboard.url("/manage/devices"))
    form = page.locator("[data-testid=register-form]")
    # The browser's own checks would stop some of these before the server sees them.
    form.evaluate("form => form.noValidate = true")
    for name, value in fields.items():
        form.locator(f"input[name={name}]").fill(value)
    with page.expect_response(lambda response: response.request.method == "POST") as answer:
        form.locator("button").click()
    assert answer.value.status in {400, 409}
    expect(page.locator("[data-testid=problem]")).to_contain_text(problem)
    store = open_event_store(dashboard.world.database_url)
    try:
        assert (store.head("registry:HP-000778"), store.head("registry:HP-000101")) == before
    finally:
        store.close()


def test_recording_a_service_visit(page: Page, dashboard: Dashboard) -> None:
    """The service form is prefilled with the device's lifetime count; recording it
    puts ``device.serviced`` with that count, and the read model shows it as the
    actuations at the last service (where the next service point counts from)."""
    token = dashboard.world.tokens["manufacturer"]
    detail: dict[str, Any] = api_get(dashboard, token, "/devices/HP-000102")
    log_in(page, dashboard, "manufacturer")
    page.goto(dashboard.url("/manage/devices/HP-000102"))
    counted = page.locator("[data-testid=service-form] input[name=actuations_at_service]")
    expect(counted).to_have_value(str(detail["lifetime_actuations"]))
    page.fill("[data-testid=service-form] input[name=notes]", "actuator seals replaced")
    page.click("[data-testid=service-form] button")

    page.wait_for_url(dashboard.url("/manage/devices/HP-000102?done=serviced"))
    served = page.locator("[data-testid=history] tr[data-type='device.serviced']")
    expect(served).to_contain_text(f"at {detail['lifetime_actuations']:,} actuations")
    expect(served).to_contain_text("actuator seals replaced")
    shown = f"[data-testid=actuations-at-service]:text('{detail['lifetime_actuations']:,}')"
    reload_until(page, dashboard.url("/manage/devices/HP-000102"), shown)
    after = api_get(dashboard, token, "/devices/HP-000102")
    assert after["actuations_at_service"] == detail["lifetime_actuations"]
    assert after["actuations_since_service"] == 0


def test_a_bad_service_count_is_refused(page: Page, dashboard: Dashboard) -> None:
    """A count that is not a whole number is refused with a message, nothing recorded."""
    store = open_event_store(dashboard.world.database_url)
    try:
        before = store.head("registry:HP-000201")
    finally:
        store.close()
    log_in(page, dashboard, "manufacturer")
    page.goto(dashboard.url("/manage/devices/HP-000201"))
    page.fill("[data-testid=service-form] input[name=actuations_at_service]", "lots")
    page.click("[data-testid=service-form] button")
    expect(page.locator("[data-testid=problem]")).to_have_text(
        "Actuations at service: a whole number, not 'lots'."
    )
    store = open_event_store(dashboard.world.database_url)
    try:
        assert store.head("registry:HP-000201") == before
    finally:
        store.close()


def test_clinics_have_no_management_screens(page: Page, dashboard: Dashboard) -> None:
    """Clinic staff see no link to the screens, are refused them (403), and a post
    with their session changes nothing."""
    log_in(page, dashboard, "clinic_a")
    assert page.locator("nav a[href='/manage/devices']").count() == 0
    response = page.goto(dashboard.url("/manage/devices/HP-000101"))
    assert response is not None
    assert response.status == 403
    cookies = {cookie["name"]: cookie["value"] for cookie in page.context.cookies()}
    refused = httpx.post(
        dashboard.url("/manage/devices/HP-000101/assign"), data={"clinic_id": "clinic-bravo"},
        cookies=cookies, headers={"Origin": dashboard.base_url},
    )  # fmt: skip
    assert refused.status_code == 403
    assert (
        api_get(dashboard, dashboard.world.tokens["manufacturer"], "/devices/HP-000101")[
            "clinic_id"
        ]
        == CLINIC_A
    )
