"""The webhook screens in a real browser: a clinic adds a webhook (its secret shown
once), the egress policy's refusal shown at the URL, rotating, switching off and
deleting, each webhook's delivery log; the manufacturer manages any clinic's, a
clinic never another's; and every change is in the API and the audit log with its
author."""

import uuid
from datetime import UTC, datetime

from playwright.sync_api import Browser, Page, expect
from sqlalchemy import create_engine

from schemas.streams import clinic_config_stream
from services.delivery import AlertNotice, AlertState, delivery_log, list_webhooks
from services.delivery.delivery_log import (
    claim_attempt,
    due_deliveries,
    enqueue_deliveries,
    record_outcome,
)
from services.delivery.retry import RetryLater
from tests.browser.conftest import Dashboard
from tests.browser.management_support import audit_entries, post_as_signed_in, stream_head
from tests.browser.test_dashboard import api_get, log_in
from tests.support.api_world import CLINIC_A, CLINIC_B

WEBHOOKS_PAGE = f"/manage/clinics/{CLINIC_A}/webhooks"


def _add(page: Page, url: str) -> str:
    """Add ``url`` on the open webhooks page; the secret the page shows once."""
    page.fill("#webhook-url", url)
    with page.expect_response(lambda response: response.request.method == "POST") as answer:
        page.click("[data-testid=add-form] button")
    assert answer.value.status == 201
    return page.locator("[data-testid=secret]").inner_text()


def _hook_id(dashboard: Dashboard, clinic_id: str, url: str) -> str:
    hooks = api_get(dashboard, dashboard.world.tokens["manufacturer"],
                    f"/clinics/{clinic_id}/webhooks")  # fmt: skip
    found: str = next(hook["id"] for hook in hooks if hook["url"] == url)
    return found


def test_a_clinic_adds_a_webhook_and_sees_its_secret_once(page: Page, dashboard: Dashboard) -> None:
    """From the navigation a clinic reaches its webhooks and adds one: the signing
    secret is on that answer only (not on the page reloaded), the API lists the
    webhook, and the audit log names the person as the author of ``webhook.created``."""
    url = "https://hooks.alpha-clinic.example/coreline/alerts"
    log_in(page, dashboard, "clinic_a")
    page.goto(dashboard.url("/alerts"))
    page.click("nav a[href='/manage/webhooks']")
    page.wait_for_url(dashboard.url(WEBHOOKS_PAGE))

    secret = _add(page, url)
    assert len(secret) >= 32
    webhook_id = _hook_id(dashboard, CLINIC_A, url)
    expect(page.locator(f"[data-testid=webhooks] tr[data-webhook='{webhook_id}']")).to_contain_text(
        url
    )
    page.goto(dashboard.url(WEBHOOKS_PAGE))
    expect(page.locator("[data-testid=secret]")).to_have_count(0)
    assert secret not in page.content()
    created = audit_entries(dashboard, subject=f"clinic:{CLINIC_A}", kind="webhook.created")
    assert created[0]["data"]["webhook_id"] == webhook_id
    assert dashboard.accounts["clinic_a"].email in created[0]["author"]


def test_a_url_the_egress_policy_forbids_is_refused_at_the_field(
    page: Page, dashboard: Dashboard
) -> None:
    """A webhook to a loopback address is refused (422) with the egress policy's
    reason beside the URL, the URL kept as typed, and nothing written or recorded."""
    before = stream_head(dashboard, clinic_config_stream(CLINIC_A))
    hooks_before = api_get(dashboard, dashboard.world.tokens["clinic_a"],
                           f"/clinics/{CLINIC_A}/webhooks")  # fmt: skip
    log_in(page, dashboard, "clinic_a")
    page.goto(dashboard.url(WEBHOOKS_PAGE))
    page.fill("#webhook-url", "http://127.0.0.1:8080/steal")
    with page.expect_response(lambda response: response.request.method == "POST") as answer:
        page.click("[data-testid=add-form] button")

    assert answer.value.status == 422
    error = page.locator("[data-testid=add-form] [data-testid=field-error]")
    expect(error).to_contain_text("webhook URL refused by the egress policy")
    expect(error).to_contain_text("loopback")
    expect(page.locator("#webhook-url")).to_have_value("http://127.0.0.1:8080/steal")
    expect(page.locator("#webhook-url")).to_have_attribute("aria-invalid", "true")
    assert stream_head(dashboard, clinic_config_stream(CLINIC_A)) == before
    assert api_get(dashboard, dashboard.world.tokens["clinic_a"],
                   f"/clinics/{CLINIC_A}/webhooks") == hooks_before  # fmt: skip


def test_rotate_switch_off_and_delete_a_webhook(page: Page, dashboard: Dashboard) -> None:
    """Rotating shows a new secret once and bumps the version; switching off and
    deleting change what the API answers; each is recorded with the person as author."""
    url = "https://hooks.alpha-clinic.example/rotating"
    log_in(page, dashboard, "clinic_a")
    page.goto(dashboard.url(WEBHOOKS_PAGE))
    first = _add(page, url)
    webhook_id = _hook_id(dashboard, CLINIC_A, url)
    row = page.locator(f"tr[data-webhook='{webhook_id}']")

    row.locator("[data-testid=rotate-form] button").click()
    expect(page.locator("[data-testid=secret]")).to_be_visible()
    second = page.locator("[data-testid=secret]").inner_text()
    assert second != first
    expect(row).to_contain_text("version 2")

    row.locator("[data-testid=switch-form] button").click()
    page.wait_for_url(dashboard.url(f"{WEBHOOKS_PAGE}?done=disabled"))
    expect(row).to_have_attribute("data-active", "no")
    hooks = api_get(dashboard, dashboard.world.tokens["clinic_a"], f"/clinics/{CLINIC_A}/webhooks")
    assert next(hook for hook in hooks if hook["id"] == webhook_id)["active"] is False

    row.locator("[data-testid=delete-form] button").click()
    page.wait_for_url(dashboard.url(f"{WEBHOOKS_PAGE}?done=deleted"))
    expect(row).to_have_count(0)
    hooks = api_get(dashboard, dashboard.world.tokens["clinic_a"], f"/clinics/{CLINIC_A}/webhooks")
    assert webhook_id not in [hook["id"] for hook in hooks]
    changes = [
        entry["kind"]
        for entry in audit_entries(dashboard, subject=f"clinic:{CLINIC_A}", kind="webhook.")
        if entry["data"]["webhook_id"] == webhook_id
    ]
    assert changes == [
        "webhook.deleted", "webhook.disabled", "webhook.secret_rotated", "webhook.created"
    ]  # fmt: skip
    for entry in audit_entries(dashboard, subject=f"clinic:{CLINIC_A}", kind="webhook.")[:4]:
        assert dashboard.accounts["clinic_a"].email in entry["author"]


def test_a_webhooks_delivery_log(page: Page, dashboard: Dashboard) -> None:
    """A notice the delivery worker tried once and must retry shows on the webhook's
    delivery log with its state, attempts and the receiver's answer."""
    url = "https://hooks.alpha-clinic.example/logged"
    log_in(page, dashboard, "clinic_a")
    page.goto(dashboard.url(WEBHOOKS_PAGE))
    _add(page, url)
    webhook_id = _hook_id(dashboard, CLINIC_A, url)
    alert_id = str(uuid.uuid4())
    engine = create_engine(dashboard.world.database_url)
    try:
        now = datetime.now(UTC)
        notice = AlertNotice(
            alert_id=alert_id, device_id="HP-000101", clinic_id=CLINIC_A,
            rule="coverage_exceeded", subject="s-1", severity="critical",
            state=AlertState.RAISED, message="coverage over the maximum",
            at=now.isoformat().replace("+00:00", "Z"), event_id=str(uuid.uuid4()), seq=1,
        )  # fmt: skip
        with engine.begin() as connection:
            enqueue_deliveries(connection, [notice], now)
        # As the delivery worker does: claim the attempt, then record its outcome.
        due = next(d for d in due_deliveries(engine, now, 100) if d.webhook_id == webhook_id)
        assert claim_attempt(engine, due, now)
        record_outcome(engine, due.id, 1, RetryLater(60.0, 503, "HTTP 503"), now)
        assert delivery_log(engine, webhook_id=webhook_id)[0].attempts == 1
    finally:
        engine.dispose()

    page.click(f"tr[data-webhook='{webhook_id}'] a:text('Delivery log')")
    page.wait_for_url(dashboard.url(f"{WEBHOOKS_PAGE}/{webhook_id}"))
    delivery = page.locator("[data-testid=deliveries] tr[data-delivery]")
    expect(delivery).to_have_count(1)
    expect(delivery).to_have_attribute("data-state", "pending")
    expect(delivery.locator("td.num")).to_have_text("1")
    expect(delivery).to_contain_text("HTTP 503")
    expect(delivery).to_contain_text(alert_id[:8])


def test_the_manufacturer_manages_any_clinics_webhooks_and_a_clinic_never_anothers(
    page: Page, dashboard: Dashboard, browser: Browser
) -> None:
    """The manufacturer picks a clinic and adds a webhook there (recorded as theirs);
    clinic A cannot open clinic B's webhooks (404), and its post to delete that
    webhook, with its own valid CSRF token, is a 404 that deletes nothing."""
    url = "https://hooks.bravo-clinic.example/coreline"
    log_in(page, dashboard, "manufacturer")
    page.goto(dashboard.url("/manage/webhooks"))
    page.wait_for_url(dashboard.url("/manage/policy"))
    page.click(f"[data-testid=clinics] a[href='/manage/clinics/{CLINIC_B}/webhooks']")
    _add(page, url)
    webhook_id = _hook_id(dashboard, CLINIC_B, url)
    created = audit_entries(dashboard, subject=f"clinic:{CLINIC_B}", kind="webhook.created")
    assert dashboard.accounts["manufacturer"].email in created[0]["author"]

    elsewhere = browser.new_context()
    try:
        clinic = elsewhere.new_page()
        log_in(clinic, dashboard, "clinic_a")
        refused = clinic.goto(dashboard.url(f"/manage/clinics/{CLINIC_B}/webhooks"))
        assert refused is not None
        assert refused.status == 404
        clinic.goto(dashboard.url(WEBHOOKS_PAGE))
        answer = post_as_signed_in(
            clinic, dashboard, f"/manage/clinics/{CLINIC_B}/webhooks/{webhook_id}/delete", {}
        )
        assert answer.status == 404
    finally:
        elsewhere.close()
    engine = create_engine(dashboard.world.database_url)
    try:
        assert webhook_id in [hook.id for hook in list_webhooks(engine, CLINIC_B)]
    finally:
        engine.dispose()


def test_an_auditor_has_no_webhook_screen(page: Page, dashboard: Dashboard) -> None:
    """An auditor sees no link to the webhooks and is refused the page (403)."""
    log_in(page, dashboard, "auditor")
    expect(page.locator("nav a[href='/manage/webhooks']")).to_have_count(0)
    refused = page.goto(dashboard.url(WEBHOOKS_PAGE))
    assert refused is not None
    assert refused.status == 403
