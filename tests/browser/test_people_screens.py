"""The people and token screens in a real browser: the manufacturer creates an
account (its password shown once, and it signs in with it), disables and enables
it, resets its password; creates a token (shown once, and the API takes it) and
revokes it; refusals are precise; a clinic has no such screen; and every change is
in the audit log with the person who made it."""

import httpx
from playwright.sync_api import Browser, Locator, Page, expect
from sqlalchemy import create_engine

from services.api.tokens import list_tokens
from tests.browser.conftest import Dashboard
from tests.browser.management_support import audit_entries, post_as_signed_in
from tests.browser.test_dashboard import api_get, log_in
from tests.support.accounts import Account
from tests.support.api_world import CLINIC_A

PEOPLE_PAGE = "/manage/people"
NURSE = "nurse.kim@alpha-clinic.example"


def _sign_in_refused(browser: Browser, dashboard: Dashboard, email: str, password: str) -> str:
    """Try the login form in a fresh context; the refusal it shows."""
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(dashboard.url("/login"))
        page.fill("#email", email)
        page.fill("#password", password)
        page.click("form[action='/login'] button[type=submit]")
        refusal = page.locator("main .error")
        expect(refusal).to_be_visible()
        assert page.url.startswith(dashboard.url("/login"))
        return refusal.inner_text()
    finally:
        context.close()


def _signs_in(browser: Browser, dashboard: Dashboard, account: Account) -> None:
    context = browser.new_context()
    try:
        page = context.new_page()
        log_in(page, dashboard, account)
        response = page.goto(dashboard.url("/alerts"))
        assert response is not None
        assert response.status == 200
        expect(page.locator("[data-role=clinic]")).to_contain_text(CLINIC_A)
    finally:
        context.close()


def _act(row: Locator, form: str) -> None:
    """Open the row's change panel (closed as each page loads) and press ``form``'s button."""
    panel = row.locator("[data-testid=manage-user]")
    if panel.get_attribute("open") is None:
        panel.locator("summary").click()
    row.locator(f"[data-testid={form}] button").click()


def _create_nurse(page: Page, dashboard: Dashboard) -> str:
    page.goto(dashboard.url(PEOPLE_PAGE))
    page.fill("#user-email", NURSE)
    page.fill("#user-display_name", "Kim Nurse")
    page.select_option("#user-role", "clinic")
    page.fill("#user-clinic_id", CLINIC_A)
    with page.expect_response(lambda response: response.request.method == "POST") as answer:
        page.click("[data-testid=user-form] button")
    assert answer.value.status == 201
    return page.locator("[data-testid=password]").inner_text()


def test_the_manufacturer_creates_disables_and_resets_an_account(
    page: Page, dashboard: Dashboard, browser: Browser
) -> None:
    """An account created on the screen signs in with the password shown once;
    disabled, it cannot sign in; enabled and reset, only the new password works.
    Each change is recorded in the account's stream with the manufacturer as author."""
    log_in(page, dashboard, "manufacturer")
    page.goto(dashboard.url("/manage/devices"))
    page.click(f"nav a[href='{PEOPLE_PAGE}']")
    password = _create_nurse(page, dashboard)
    expect(page.locator("[data-testid=totp-uri]")).to_have_count(0)
    row = page.locator(f"[data-testid=users] tr[data-email='{NURSE}']")
    expect(row).to_contain_text(f"clinic · {CLINIC_A}")
    user_id = row.get_attribute("data-user")
    _signs_in(browser, dashboard, Account(NURSE, password, None))

    _act(row, "disable-form")
    page.wait_for_url(dashboard.url(f"{PEOPLE_PAGE}?done=disabled"))
    expect(row).to_have_attribute("data-disabled", "yes")
    _sign_in_refused(browser, dashboard, NURSE, password)

    _act(row, "disable-form")
    page.wait_for_url(dashboard.url(f"{PEOPLE_PAGE}?done=enabled"))
    _act(row, "reset-form")
    renewed = page.locator("[data-testid=enrolment] [data-testid=password]").inner_text()
    assert renewed != password
    _sign_in_refused(browser, dashboard, NURSE, password)
    _signs_in(browser, dashboard, Account(NURSE, renewed, None))

    kinds = [entry["kind"] for entry in audit_entries(dashboard, subject=f"user:{user_id}")]
    assert kinds == ["user.password_reset", "user.enabled", "user.disabled", "user.created"]
    for entry in audit_entries(dashboard, subject=f"user:{user_id}"):
        assert dashboard.accounts["manufacturer"].email in entry["author"]
    assert password not in str(audit_entries(dashboard, subject=f"user:{user_id}"))


def test_bad_accounts_are_refused_at_their_field(page: Page, dashboard: Dashboard) -> None:
    """A clinic account without its clinic (422), a malformed e-mail (422) and an
    e-mail that has an account already (409) are refused at their field, creating
    and recording nothing."""
    log_in(page, dashboard, "manufacturer")
    page.goto(dashboard.url(PEOPLE_PAGE))
    before = page.locator("[data-testid=users] tr[data-user]").count()
    cases = [
        ({"#user-email": "new.one@alpha-clinic.example", "#user-clinic_id": ""}, "clinic_id",
         422, "A clinic user needs Clinic"),
        ({"#user-email": "not-an-address", "#user-clinic_id": CLINIC_A}, "email", 422,
         "E-mail 'not-an-address' is not an e-mail address"),
        ({"#user-email": dashboard.accounts["clinic_a"].email, "#user-clinic_id": CLINIC_A},
         "email", 409, "There is already an account for"),
    ]  # fmt: skip
    for fields, field, status, message in cases:
        page.goto(dashboard.url(PEOPLE_PAGE))
        page.fill("#user-display_name", "Someone")
        page.select_option("#user-role", "clinic")
        for selector, value in fields.items():
            page.fill(selector, value)
        with page.expect_response(lambda response: response.request.method == "POST") as answer:
            page.click("[data-testid=user-form] button")
        assert answer.value.status == status
        expect(page.locator(f"#user-{field}-error")).to_contain_text(message)
        expect(page.locator(f"#user-{field}")).to_have_attribute("aria-invalid", "true")
        expect(page.locator("[data-testid=users] tr[data-user]")).to_have_count(before)


def test_a_token_is_shown_once_works_and_is_revoked(page: Page, dashboard: Dashboard) -> None:
    """A clinic token created on the screen is shown once, lists with its expiry (never
    the token), answers the API for its clinic, and once revoked is refused (401);
    both changes are recorded with the manufacturer as author."""
    log_in(page, dashboard, "manufacturer")
    page.goto(dashboard.url(PEOPLE_PAGE))
    page.select_option("#token-role", "clinic")
    page.fill("#token-clinic_id", CLINIC_A)
    page.fill("#token-label", "front-desk tablet")
    page.fill("#token-expires_in", "30d")
    with page.expect_response(lambda response: response.request.method == "POST") as answer:
        page.click("[data-testid=token-form] button")
    assert answer.value.status == 201
    token = page.locator("[data-testid=token]").inner_text()
    devices = api_get(dashboard, token, "/devices")
    assert {device["clinic_id"] for device in devices["items"]} == {CLINIC_A}

    page.goto(dashboard.url(PEOPLE_PAGE))
    assert token not in page.content()
    row = page.locator("[data-testid=tokens] tr[data-state=live]", has_text="front-desk tablet")
    expect(row).to_contain_text("until")
    token_id = row.get_attribute("data-token")
    row.locator("[data-testid=revoke-form] button").click()
    page.wait_for_url(dashboard.url(f"{PEOPLE_PAGE}?done=revoked"))
    expect(page.locator(f"tr[data-token='{token_id}']")).to_have_attribute("data-state", "revoked")
    refused = httpx.get(
        dashboard.url("/api/v1/devices"), headers={"Authorization": f"Bearer {token}"}
    )
    assert refused.status_code == 401
    entries = audit_entries(dashboard, subject=f"token:{token_id}")
    assert [entry["kind"] for entry in entries] == ["token.revoked", "token.created"]
    assert all(dashboard.accounts["manufacturer"].email in entry["author"] for entry in entries)
    assert token not in str(entries)


def test_a_bad_expiry_is_refused_at_its_field(page: Page, dashboard: Dashboard) -> None:
    """An expiry that is not a number with h, d or w is refused (422) at its field."""
    engine = create_engine(dashboard.world.database_url)
    try:
        before = len(list_tokens(engine))
        log_in(page, dashboard, "manufacturer")
        page.goto(dashboard.url(PEOPLE_PAGE))
        page.select_option("#token-role", "auditor")
        page.fill("#token-expires_in", "soon")
        with page.expect_response(lambda response: response.request.method == "POST") as answer:
            page.click("[data-testid=token-form] button")
        assert answer.value.status == 422
        expect(page.locator("#token-expires_in-error")).to_have_text(
            "Expires in 'soon': a number and h, d or w, e.g. 90d"
        )
        assert len(list_tokens(engine)) == before
    finally:
        engine.dispose()


def test_a_manufacturer_may_not_disable_their_own_account(page: Page, dashboard: Dashboard) -> None:
    """Disabling the account one is signed in with is refused (409): no one locks
    the last door behind them by a slip of the mouse."""
    log_in(page, dashboard, "manufacturer")
    page.goto(dashboard.url(PEOPLE_PAGE))
    own = page.locator(f"tr[data-email='{dashboard.accounts['manufacturer'].email}']")
    with page.expect_response(lambda response: response.request.method == "POST") as answer:
        _act(own, "disable-form")
    assert answer.value.status == 409
    expect(page.locator("main")).to_contain_text("You may not disable the account")


def test_a_clinic_has_no_people_screen(page: Page, dashboard: Dashboard) -> None:
    """Clinic staff see no link to people and tokens, are refused the page (403), and
    a token post with their own valid CSRF token is refused (403), creating nothing."""
    engine = create_engine(dashboard.world.database_url)
    try:
        before = len(list_tokens(engine))
        log_in(page, dashboard, "clinic_a")
        page.goto(dashboard.url("/alerts"))
        expect(page.locator(f"nav a[href='{PEOPLE_PAGE}']")).to_have_count(0)
        refused = post_as_signed_in(
            page, dashboard, "/manage/people/tokens", {"role": "manufacturer", "expires_in": "1d"}
        )
        assert refused.status == 403
        assert len(list_tokens(engine)) == before
        answer = page.goto(dashboard.url(PEOPLE_PAGE))
        assert answer is not None
        assert answer.status == 403
    finally:
        engine.dispose()


def test_the_manufacturer_changes_an_accounts_role(page: Page, dashboard: Dashboard) -> None:
    """A clinic account made a clinic-scoped auditor is recorded as
    ``user.role_changed`` with both scopes and the manufacturer as author; a clinic
    role without a clinic is refused (422) and changes nothing."""
    log_in(page, dashboard, "manufacturer")
    page.goto(dashboard.url(PEOPLE_PAGE))
    page.fill("#user-email", "lab.tech@alpha-clinic.example")
    page.fill("#user-display_name", "Lab Tech")
    page.select_option("#user-role", "clinic")
    page.fill("#user-clinic_id", CLINIC_A)
    page.click("[data-testid=user-form] button")
    row = page.locator("[data-testid=users] tr[data-email='lab.tech@alpha-clinic.example']")
    user_id = row.get_attribute("data-user")

    row.locator("[data-testid=manage-user] summary").click()
    row.locator("[data-testid=role-form] input[name=clinic_id]").fill("")
    with page.expect_response(lambda response: response.request.method == "POST") as answer:
        _act(row, "role-form")
    assert answer.value.status == 422
    expect(page.locator("main")).to_contain_text("A clinic user needs Clinic")

    page.goto(dashboard.url(PEOPLE_PAGE))
    row.locator("[data-testid=manage-user] summary").click()
    row.locator("[data-testid=role-form] select").select_option("auditor")
    _act(row, "role-form")
    page.wait_for_url(dashboard.url(f"{PEOPLE_PAGE}?done=role"))
    expect(row).to_contain_text(f"auditor · {CLINIC_A}")
    changed = audit_entries(dashboard, subject=f"user:{user_id}")[0]
    assert changed["kind"] == "user.role_changed"
    assert (changed["data"]["role"], changed["data"]["previous_role"]) == ("auditor", "clinic")
    assert changed["data"]["clinic_id"] == CLINIC_A
    assert dashboard.accounts["manufacturer"].email in changed["author"]
