"""The manufacturer's configuration and command screens in a real browser: a layer
set through the form reaches every device as a new pending version, a clinic layer out
of bounds is refused naming the bound, and a command is sent, listed pending with its
author, and shown acknowledged once the handpiece's answer is stored."""

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from datetime import time as clock_time

import pytest
from playwright.sync_api import Page, expect

from services.api import commands
from services.config_delivery import ConfigDelivery
from services.config_delivery.database import open_engine
from services.eventstore import open_event_store
from tests.browser.conftest import Dashboard, reload_until
from tests.browser.test_dashboard import log_in
from tests.support import api_world
from tests.support.api_world import CLINIC_A, HandpieceWriter, World, build_world

HANDPIECE = "HP-000601"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    """The dashboard's two-clinic world, plus a registered handpiece of clinic A that
    has reported nothing yet."""
    database_url = f"sqlite:///{tmp_path_factory.mktemp('config-screens') / 'coreline.db'}"
    yesterday = datetime.now(UTC).date() - timedelta(days=1)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(api_world, "START", datetime.combine(yesterday, clock_time(8), UTC))
        built = build_world(database_url)
    store = open_event_store(database_url)
    try:
        commands.register_device(store, HANDPIECE, "CL-200", "fleet-ops")
        commands.assign_device(store, HANDPIECE, CLINIC_A, "fleet-ops")
    finally:
        store.close()
    return built


@pytest.fixture(scope="module", autouse=True)
def delivery(world: World) -> Iterator[None]:
    """The configuration delivery loop folding in a thread (no broker: nothing to
    publish to in this world)."""
    store, engine = open_event_store(world.database_url), open_engine(world.database_url)
    stop = threading.Event()
    thread = threading.Thread(
        target=ConfigDelivery(store, engine, None).run, args=(stop, 0.2), name="delivery"
    )
    thread.start()
    yield
    stop.set()
    thread.join(timeout=10)
    store.close()
    engine.dispose()
    assert not thread.is_alive(), "the delivery thread did not stop"


def test_a_fleet_layer_set_on_the_page_reaches_every_device(
    page: Page, dashboard: Dashboard
) -> None:
    """The manufacturer records a fleet layer; the layers table shows it with the
    person as author; every registered device gets a new desired version, pending
    until it answers; the convergence line counts them."""
    log_in(page, dashboard, "manufacturer")
    page.goto(dashboard.url("/manage/config"))
    form = page.get_by_test_id("layer-form")
    form.locator("select[name=layer]").select_option("fleet")
    form.locator("textarea[name=settings]").fill('{"heartbeat_interval_s": 90, '
                                                 '"recalled_lots": ["L2607B"]}')  # fmt: skip
    form.locator("button").click()

    expect(page.get_by_test_id("done")).to_contain_text("Layer recorded")
    reload_until(page, dashboard.url("/manage/config"), "[data-layer=fleet]")
    fleet_row = page.locator("[data-testid=layers] tr[data-layer=fleet]")
    expect(fleet_row).to_contain_text('"heartbeat_interval_s":90')
    expect(fleet_row).to_contain_text(dashboard.accounts["manufacturer"].email)
    expect(page.get_by_test_id("converged")).to_have_text("0 of 4")
    expect(page.get_by_test_id("pending-count")).to_have_text("4 pending")
    row = page.locator(f"[data-testid=device-configs] tr[data-device={HANDPIECE}]")
    expect(row).to_have_attribute("data-state", "pending")
    expect(row).to_contain_text("v2")


def test_a_clinic_layer_out_of_bounds_is_refused_naming_the_bound(
    page: Page, dashboard: Dashboard
) -> None:
    """A clinic layer whose heartbeat is below the clinic bounds is refused with the
    field and range, and unreadable settings with where they fail; nothing recorded."""
    log_in(page, dashboard, "manufacturer")
    page.goto(dashboard.url("/manage/config"))
    form = page.get_by_test_id("layer-form")
    form.locator("select[name=layer]").select_option("clinic")
    form.locator("input[name=subject]").fill(CLINIC_A)
    form.locator("textarea[name=settings]").fill('{"heartbeat_interval_s": 2}')
    form.locator("button").click()
    expect(page.get_by_test_id("problem")).to_have_text(
        "heartbeat_interval_s 2 is outside 10..3600"
    )

    form = page.get_by_test_id("layer-form")
    form.locator("textarea[name=settings]").fill('{"cartridge_life_mode": "sometimes"}')
    form.locator("button").click()
    expect(page.get_by_test_id("problem")).to_contain_text("cartridge_life_mode")
    expect(page.locator("[data-testid=layers] tr[data-layer=clinic]")).to_have_count(0)


def test_a_command_is_sent_followed_and_shown_acknowledged(
    page: Page, dashboard: Dashboard, world: World
) -> None:
    """Sent from the form, the command is listed pending with the person as author;
    bad arguments are refused naming them; once the handpiece's acknowledgement is
    stored, the list says acknowledged."""
    log_in(page, dashboard, "manufacturer")
    page.goto(dashboard.url("/manage/commands"))
    form = page.get_by_test_id("command-form")
    form.locator("input[name=device_id]").fill(HANDPIECE)
    form.locator("select[name=cmd]").select_option("resend")
    form.locator("input[name=args]").fill('{"from_seq": 5, "to_seq": 2}')
    form.locator("button").click()
    expect(page.get_by_test_id("problem")).to_contain_text("to_seq 2 is below from_seq 5")

    form = page.get_by_test_id("command-form")
    form.locator("input[name=device_id]").fill(HANDPIECE)
    form.locator("select[name=cmd]").select_option("lock")
    form.locator("input[name=args]").fill('{"reason": "inspection"}')
    form.locator("button").click()
    expect(page.get_by_test_id("sent")).to_be_visible()
    command_id = page.url.split("sent=")[1]
    row = f"[data-testid=commands] tr[data-command='{command_id}']"
    reload_until(page, dashboard.url(f"/manage/commands?device_id={HANDPIECE}"), row)
    expect(page.locator(row)).to_have_attribute("data-state", "pending")
    expect(page.locator(row)).to_contain_text(dashboard.accounts["manufacturer"].email)

    store = open_event_store(world.database_url)
    try:
        HandpieceWriter(store, HANDPIECE).append(
            "command.acknowledged", {"command_id": command_id, "cmd": "lock"}
        )
    finally:
        store.close()
    acknowledged = f"{row}[data-state=acknowledged]"
    reload_until(page, dashboard.url(f"/manage/commands?device_id={HANDPIECE}"), acknowledged)
    expect(page.locator(acknowledged)).to_have_count(1)
