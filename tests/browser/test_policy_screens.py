"""The clinic policy screens in a real browser: a clinic sets its alert thresholds,
time zone and handpiece settings beside the manufacturer's bounds, a value out of
bounds is refused at its field with nothing recorded, the manufacturer sets the
bounds themselves, and each change is in the API and the audit log with its author."""

from playwright.sync_api import Page, expect

from schemas.streams import FLEET_CONFIG_STREAM, clinic_config_stream
from tests.browser.conftest import Dashboard
from tests.browser.management_support import audit_entries, post_as_signed_in, stream_head
from tests.browser.test_dashboard import api_get, log_in
from tests.support.api_world import CLINIC_A, CLINIC_B

POLICY_PAGE = f"/manage/clinics/{CLINIC_A}/policy"


def test_a_clinic_sets_its_alert_thresholds_and_time_zone(page: Page, dashboard: Dashboard) -> None:
    """From the navigation, a clinic's staff reach their clinic's policy, see each
    threshold's bounds beside it, and record new ones: the API answers them, and the
    audit log names the person as the author of ``policy.changed``."""
    log_in(page, dashboard, "clinic_a")
    page.click("nav a[href='/manage/policy']")
    page.wait_for_url(dashboard.url(POLICY_PAGE))
    coverage = page.locator("[data-testid=alerts-form] [data-field=coverage_max_pct]")
    expect(coverage.locator("[data-testid=bounds]")).to_contain_text("allowed 1..20")
    expect(coverage.locator("[data-testid=bounds]")).to_contain_text("default 8")

    page.fill("#alert-coverage_max_pct", "6")
    page.fill("#alert-time_zone", "Europe/Berlin")
    page.click("[data-testid=alerts-form] button")

    page.wait_for_url(dashboard.url(f"{POLICY_PAGE}?done=alerts"))
    expect(page.locator("[data-testid=done]")).to_contain_text("Alert thresholds recorded")
    expect(page.locator("#alert-coverage_max_pct")).to_have_value("6")
    policy = api_get(dashboard, dashboard.world.tokens["clinic_a"], f"/clinics/{CLINIC_A}/policy")
    assert policy["overrides"] == {"coverage_max_pct": 6, "time_zone": "Europe/Berlin"}
    newest = audit_entries(dashboard, subject=f"clinic:{CLINIC_A}", kind="policy.changed")[0]
    assert dashboard.accounts["clinic_a"].email in newest["author"]
    assert newest["data"]["overrides"] == {"coverage_max_pct": 6, "time_zone": "Europe/Berlin"}


def test_an_out_of_bounds_threshold_is_refused_at_its_field(
    page: Page, dashboard: Dashboard
) -> None:
    """A coverage maximum above the manufacturer's bound and an unknown time zone are
    each refused with a message at their own field (422), the other fields keep what
    was typed, and nothing is recorded."""
    before = stream_head(dashboard, clinic_config_stream(CLINIC_A))
    log_in(page, dashboard, "clinic_a")
    page.goto(dashboard.url(POLICY_PAGE))
    page.fill("#alert-coverage_max_pct", "35")
    page.fill("#alert-needle_life_low_pct", "85")
    page.fill("#alert-time_zone", "Mars/Olympus")
    with page.expect_response(lambda response: response.request.method == "POST") as answer:
        page.click("[data-testid=alerts-form] button")

    assert answer.value.status == 422
    coverage = page.locator("[data-field=coverage_max_pct] [data-testid=field-error]")
    expect(coverage).to_have_text("coverage_max_pct: 35 is outside the manufacturer's bounds 1..20")
    expect(page.locator("#alert-coverage_max_pct")).to_have_attribute("aria-invalid", "true")
    zone = page.locator("[data-field=time_zone] [data-testid=field-error]")
    expect(zone).to_contain_text("'Mars/Olympus' is not an IANA time zone")
    expect(
        page.locator("[data-field=needle_life_low_pct] [data-testid=field-error]")
    ).to_have_count(0)
    expect(page.locator("#alert-needle_life_low_pct")).to_have_value("85")
    expect(page.locator("[data-testid=problem]")).to_contain_text("Nothing was recorded")
    assert stream_head(dashboard, clinic_config_stream(CLINIC_A)) == before


def test_a_clinic_sets_what_a_spent_cartridge_does_within_the_bounds(
    page: Page, dashboard: Dashboard
) -> None:
    """The clinic's handpiece settings: a spent cartridge blocks the handpiece, a
    heartbeat within the bounds is taken; one outside them is refused at its field.
    The API's clinic layer shows what was recorded, with the person as author."""
    log_in(page, dashboard, "clinic_a")
    page.goto(dashboard.url(POLICY_PAGE))
    form = page.locator("[data-testid=devices-form]")
    expect(form.locator("[data-field=heartbeat_interval_s] [data-testid=bounds]")).to_have_text(
        "allowed 10..3600"
    )
    form.locator("#device-heartbeat_interval_s").fill("5")
    with page.expect_response(lambda response: response.request.method == "POST") as answer:
        form.locator("button").click()
    assert answer.value.status == 422
    expect(
        page.locator("[data-field=heartbeat_interval_s] [data-testid=field-error]")
    ).to_have_text("heartbeat_interval_s 5 is outside 10..3600")

    page.select_option("#device-cartridge_life_mode", "block")
    page.fill("#device-heartbeat_interval_s", "120")
    page.click("[data-testid=devices-form] button")
    page.wait_for_url(dashboard.url(f"{POLICY_PAGE}?done=devices"))
    expect(page.locator("#device-cartridge_life_mode")).to_have_value("block")
    layer = api_get(dashboard, dashboard.world.tokens["clinic_a"], f"/clinics/{CLINIC_A}/config")
    assert layer["settings"] == {"cartridge_life_mode": "block", "heartbeat_interval_s": 120}
    newest = audit_entries(dashboard, subject=f"clinic:{CLINIC_A}", kind="device_config.changed")
    assert dashboard.accounts["clinic_a"].email in newest[0]["author"]


def test_a_clinic_may_neither_set_bounds_nor_see_another_clinics_policy(
    page: Page, dashboard: Dashboard
) -> None:
    """A clinic has no bounds form, its post to set bounds (with its own valid CSRF
    token) is refused 403 and records nothing, and another clinic's policy page is a
    404 exactly like a clinic that does not exist."""
    before = stream_head(dashboard, FLEET_CONFIG_STREAM)
    log_in(page, dashboard, "clinic_a")
    page.goto(dashboard.url(POLICY_PAGE))
    expect(page.locator("[data-testid=bounds-form]")).to_have_count(0)
    refused = post_as_signed_in(
        page, dashboard, "/manage/policy-bounds", {"coverage_max_pct.min": "1",
                                                   "coverage_max_pct.max": "99"}
    )  # fmt: skip
    assert refused.status == 403
    assert "may not see this page" in refused.text()
    assert stream_head(dashboard, FLEET_CONFIG_STREAM) == before

    other = page.goto(dashboard.url(f"/manage/clinics/{CLINIC_B}/policy"))
    assert other is not None
    assert other.status == 404
    expect(page.locator("main")).to_contain_text("no such clinic")


def test_an_auditor_has_no_policy_screen(page: Page, dashboard: Dashboard) -> None:
    """An auditor reads but changes nothing: no link, and the page is refused (403)."""
    log_in(page, dashboard, "auditor")
    expect(page.locator("nav a[href='/manage/policy']")).to_have_count(0)
    refused = page.goto(dashboard.url(POLICY_PAGE))
    assert refused is not None
    assert refused.status == 403


def test_the_manufacturer_sets_the_bounds(page: Page, dashboard: Dashboard) -> None:
    """The manufacturer sees the bounds in force with each default beside them;
    bounds that leave out the default are refused at their field; narrower ones are
    recorded (by the person), answered by ``/policy-bounds``, and the clinic's page
    shows them beside its field."""
    log_in(page, dashboard, "manufacturer")
    page.goto(dashboard.url("/manage/devices"))
    page.click("nav a[href='/manage/policy']")
    page.wait_for_url(dashboard.url("/manage/policy"))
    page.fill("#bound-coverage_max_pct-min", "9")
    with page.expect_response(lambda response: response.request.method == "POST") as answer:
        page.click("[data-testid=bounds-form] button")
    assert answer.value.status == 422
    expect(page.locator("[data-field=coverage_max_pct] [data-testid=field-error]")).to_have_text(
        "coverage_max_pct: the bounds 9..20 leave out the default 8"
    )

    page.fill("#bound-coverage_max_pct-min", "2")
    page.fill("#bound-coverage_max_pct-max", "15")
    page.click("[data-testid=bounds-form] button")
    page.wait_for_url(dashboard.url("/manage/policy?done=bounds"))
    expect(page.locator("[data-field=coverage_max_pct] [data-testid=set]")).to_be_visible()
    bounds = api_get(dashboard, dashboard.world.tokens["manufacturer"], "/policy-bounds")
    assert bounds["set_by_manufacturer"] == {"coverage_max_pct": {"min": 2, "max": 15}}
    newest = audit_entries(dashboard, subject="fleet", kind="policy_bounds.changed")[0]
    assert dashboard.accounts["manufacturer"].email in newest["author"]

    page.click(f"[data-testid=clinics] a[href='{POLICY_PAGE}']")
    coverage = page.locator("[data-testid=alerts-form] [data-field=coverage_max_pct]")
    expect(coverage.locator("[data-testid=bounds]")).to_contain_text("allowed 2..15")


def test_the_manufacturer_sets_what_a_clinic_may_choose_for_a_spent_cartridge(
    page: Page, dashboard: Dashboard
) -> None:
    """Bounds on the clinic layer: a range whose ends are crossed is refused at its
    field; allowing only ``block`` for a spent cartridge is recorded (by the person),
    answered by ``/config/clinic-bounds``, and a clinic's page then offers it alone."""
    log_in(page, dashboard, "manufacturer")
    page.goto(dashboard.url("/manage/policy"))
    form = page.locator("[data-testid=device-bounds-form]")
    expect(form.locator("input[name='cartridge_life_mode.warn']")).to_be_checked()
    form.locator("#device-bound-heartbeat_interval_s-min").fill("700")
    form.locator("#device-bound-heartbeat_interval_s-max").fill("600")
    with page.expect_response(lambda response: response.request.method == "POST") as answer:
        form.locator("button").click()
    assert answer.value.status == 422
    expect(
        page.locator("[data-field=heartbeat_interval_s] [data-testid=field-error]")
    ).to_contain_text("min 700 is above max 600")

    page.goto(dashboard.url("/manage/policy"))
    form.locator("input[name='cartridge_life_mode.warn']").uncheck()
    form.locator("button").click()
    page.wait_for_url(dashboard.url("/manage/policy?done=device-bounds"))
    bounds = api_get(dashboard, dashboard.world.tokens["manufacturer"], "/config/clinic-bounds")
    assert bounds["modes"]["cartridge_life_mode"] == ["block"]
    assert bounds["modes"]["service_overdue_mode"] == ["warn", "block"]
    newest = audit_entries(dashboard, subject="fleet", kind="device_config_bounds.changed")[0]
    assert dashboard.accounts["manufacturer"].email in newest["author"]

    page.goto(dashboard.url(POLICY_PAGE))
    expect(page.locator("[data-field=cartridge_life_mode] [data-testid=bounds]")).to_have_text(
        "cartridge_life_mode: allowed block"
    )
