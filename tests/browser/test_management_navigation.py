"""How people reach the management screens, and how the screens read: each role's
navigation links to exactly the screens it may use, register, assign and record
service are a click from the device page and the navigation, and the policy,
webhook and people screens (errors and once-shown secrets included) pass axe-core
and fit 360 px."""

import pytest
from playwright.sync_api import Page, ViewportSize, expect

from tests.browser.conftest import Dashboard
from tests.browser.test_dashboard import log_in
from tests.support.accessibility import blocking_violations, install_axe
from tests.support.api_world import CLINIC_A

NARROW = ViewportSize(width=360, height=740)
MANAGEMENT_LINKS = [
    "/manage/devices", "/manage/identity", "/manage/config", "/manage/commands",
    "/manage/policy", "/manage/webhooks", "/manage/people",
]  # fmt: skip


@pytest.mark.parametrize(
    ("role", "links"),
    [
        ("manufacturer", MANAGEMENT_LINKS),
        ("clinic_a", ["/manage/policy", "/manage/webhooks"]),
        ("auditor", []),
    ],
)
def test_each_role_is_shown_the_screens_it_may_use(
    page: Page, dashboard: Dashboard, role: str, links: list[str]
) -> None:
    """The navigation's management links are exactly those of the role's actions."""
    log_in(page, dashboard, role)
    page.goto(dashboard.url("/sessions"))
    shown = page.locator("nav a[href^='/manage/']").evaluate_all(
        "links => links.map(link => link.getAttribute('href'))"
    )
    assert shown == links


def test_register_assign_and_service_are_a_click_away(page: Page, dashboard: Dashboard) -> None:
    """From a device's page the manufacturer reaches its assignment and service forms;
    from the navigation, the registration form."""
    log_in(page, dashboard, "manufacturer")
    page.goto(dashboard.url("/devices/HP-000101"))
    page.click("[data-testid=manage-device]")
    page.wait_for_url(dashboard.url("/manage/devices/HP-000101"))
    expect(page.locator("[data-testid=assign-form] button")).to_be_visible()
    expect(page.locator("[data-testid=service-form] button")).to_be_visible()
    page.click("nav a[href='/manage/devices']")
    page.wait_for_url(dashboard.url("/manage/devices"))
    expect(page.locator("[data-testid=register-form] button")).to_be_visible()


def _readable(page: Page, what: str) -> None:
    """No serious axe-core violation, and nothing wider than a 360 px screen."""
    assert blocking_violations(page) == [], what
    width = page.evaluate("() => document.documentElement.scrollWidth")
    assert width <= NARROW["width"], f"{what}: {width} px wide"


def test_the_screens_pass_axe_and_fit_360_px(page: Page, dashboard: Dashboard) -> None:
    """Each screen as it first shows, with a refusal at a field, and with a secret
    shown once, on a 360 px screen."""
    install_axe()
    page.set_viewport_size(NARROW)
    log_in(page, dashboard, "manufacturer")
    page.goto(dashboard.url("/manage/policy"))
    _readable(page, "bounds")
    page.goto(dashboard.url(f"/manage/clinics/{CLINIC_A}/policy"))
    _readable(page, "policy")
    page.fill("#alert-coverage_max_pct", "99")
    page.click("[data-testid=alerts-form] button")
    expect(page.locator("[data-testid=field-error]")).to_have_count(1)
    _readable(page, "policy refused")

    page.goto(dashboard.url(f"/manage/clinics/{CLINIC_A}/webhooks"))
    _readable(page, "webhooks")
    page.fill("#webhook-url", "https://hooks.alpha-clinic.example/narrow")
    page.click("[data-testid=add-form] button")
    expect(page.locator("[data-testid=secret]")).to_be_visible()
    _readable(page, "webhook secret")
    page.click("[data-testid=webhooks] a:text('Delivery log')")
    expect(page.locator("[data-testid=deliveries]")).to_be_visible()
    _readable(page, "deliveries")

    page.goto(dashboard.url("/manage/people"))
    _readable(page, "people")
    page.fill("#user-email", "narrow.screen@alpha-clinic.example")
    page.fill("#user-display_name", "Narrow Screen")
    page.select_option("#user-role", "auditor")
    page.click("[data-testid=user-form] button")
    expect(page.locator("[data-testid=totp-uri]")).to_be_visible()
    _readable(page, "enrolment")
