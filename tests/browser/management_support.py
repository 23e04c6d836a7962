"""What the management screens' browser tests share: reading the audit log and the
event store as the API and the platform see them, and posting a form with the
signed-in person's own session and CSRF token (so a refusal is the role's, not the
form's)."""

from typing import Any

from playwright.sync_api import APIResponse, Page

from services.eventstore import StreamHead, open_event_store
from tests.browser.conftest import Dashboard
from tests.browser.test_dashboard import api_get


def audit_entries(dashboard: Dashboard, **wanted: str) -> list[dict[str, Any]]:
    """``GET /api/v1/audit-log`` with the manufacturer's token, newest first."""
    query = "&".join(f"{name}={value}" for name, value in wanted.items())
    page: dict[str, Any] = api_get(
        dashboard, dashboard.world.tokens["manufacturer"], f"/audit-log?{query}"
    )
    entries: list[dict[str, Any]] = page["items"]
    return entries


def stream_head(dashboard: Dashboard, stream_id: str) -> StreamHead | None:
    """The stream's head now (``None``: nothing recorded in it)."""
    store = open_event_store(dashboard.world.database_url)
    try:
        return store.head(stream_id)
    finally:
        store.close()


def post_as_signed_in(
    page: Page, dashboard: Dashboard, path: str, fields: dict[str, str]
) -> APIResponse:
    """A form post with the page's session cookie and its CSRF token, as the page's
    own form would send it (the page must be one of the dashboard's)."""
    token = page.locator("input[name=csrf_token]").first.input_value()
    return page.request.post(
        dashboard.url(path),
        form={"csrf_token": token, **fields},
        headers={"Origin": dashboard.base_url},
        max_redirects=0,
    )
