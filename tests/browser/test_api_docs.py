"""The API's interactive documentation in a real browser: served from the API's own
files under its Content-Security-Policy."""

from playwright.sync_api import ConsoleMessage, Page, Route

from tests.browser.conftest import Dashboard


def test_api_docs_render_offline_under_the_policy(dashboard: Dashboard, page: Page) -> None:
    """Chromium, allowed no host but the server, renders the Swagger UI page with every
    operation listed and no Content-Security-Policy violation."""
    foreign: list[str] = []
    complaints: list[str] = []

    def only_here(route: Route) -> None:
        if route.request.url.startswith(dashboard.base_url + "/"):
            route.continue_()
        else:
            foreign.append(route.request.url)
            route.abort()

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            complaints.append(message.text)

    page.route("**/*", only_here)
    page.on("console", on_console)
    page.goto(dashboard.url("/api/v1/docs"))
    page.locator(".opblock").first.wait_for(timeout=15_000)
    assert foreign == []
    assert complaints == []
    assert page.locator(".opblock").count() >= 10
