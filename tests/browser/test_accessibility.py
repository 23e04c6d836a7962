"""The dashboard for people who use a keyboard, a screen reader, a phone or a printer:
axe-core finds nothing serious on any page for any role, the live refresh keeps the
focus and says what changed, every page fits 360 px, an alert can be acknowledged with
the keyboard alone, and a printed page carries the content without the controls."""

import itertools
import re
import struct
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import Page, ViewportSize

from services.api import commands
from services.eventstore import open_event_store
from tests.browser.conftest import Dashboard, reload_until
from tests.browser.test_dashboard import log_in
from tests.support.accessibility import blocking_violations, install_axe
from tests.support.api_world import CLINIC_A, HandpieceWriter

ROLES = ["manufacturer", "clinic_a", "auditor"]
NARROW = ViewportSize(width=360, height=740)
_REFRESH_WAIT_MS = 15_000
_MOST_PAGES = 40
_NOT_PAGES = re.compile(r"^/(api|static|docs|logout|login)|\.csv$")
# Two pages whose paths differ only in an identifier (a device, a session, a clinic)
# are the same template: one of each is enough.
_IDENTIFIER = re.compile(r"[^/]*\d[^/]*")


@pytest.fixture(scope="module", autouse=True)
def axe_installed() -> None:
    install_axe()


def dashboard_pages(page: Page, dashboard: Dashboard) -> list[str]:
    """Every page the signed-in person can reach by following links from the fleet
    page (its navigation and what each page links to), one per template."""
    seen: dict[str, str] = {}
    queue = ["/", *_nav_paths(page, dashboard)]
    while queue and len(seen) < _MOST_PAGES:
        path = queue.pop(0)
        shape = _IDENTIFIER.sub("*", path)
        if shape in seen:
            continue
        response = page.goto(dashboard.url(path))
        assert response is not None
        assert response.status < 500, f"{path} answered {response.status}"
        if not response.ok or urlsplit(page.url).path != urlsplit(path).path:
            continue
        seen[shape] = path
        hrefs: list[str] = page.locator("a[href^='/']").evaluate_all(
            "links => links.map(link => link.getAttribute('href'))"
        )
        for href in hrefs:
            target = urlsplit(href).path
            if not _NOT_PAGES.search(target) and _IDENTIFIER.sub("*", target) not in seen:
                queue.append(target)
    return list(seen.values())


def _nav_paths(page: Page, dashboard: Dashboard) -> list[str]:
    """Where the main navigation leads (a role without the fleet page starts there)."""
    page.goto(dashboard.url("/"))
    hrefs: list[str] = page.locator("#site-nav a").evaluate_all(
        "links => links.map(link => link.getAttribute('href'))"
    )
    return hrefs


@pytest.mark.parametrize("role", ROLES)
def test_no_serious_violations_on_any_page(page: Page, dashboard: Dashboard, role: str) -> None:
    """axe-core (WCAG 2.2 A/AA and best practice) finds no serious or critical violation
    on any page the role can reach."""
    log_in(page, dashboard, role)
    paths = dashboard_pages(page, dashboard)
    assert len(paths) >= 3, paths

    found: dict[str, list[str]] = {}
    for path in paths:
        page.goto(dashboard.url(path))
        blocking = blocking_violations(page)
        if blocking:
            found[path] = [str(violation) for violation in blocking]

    assert found == {}, "\n".join(f"{path}: {v}" for path, vs in found.items() for v in vs)


def test_no_serious_violations_signed_out(page: Page, dashboard: Dashboard) -> None:
    """The sign-in page, blank and with its error, and the error page pass axe-core."""
    page.goto(dashboard.url("/login"))
    assert blocking_violations(page) == []
    page.goto(dashboard.url("/login?error=refused"))
    assert page.get_by_role("alert").count() == 1
    assert blocking_violations(page) == []
    log_in(page, dashboard, "clinic_a")
    response = page.goto(dashboard.url("/devices/HP-999999"))
    assert response is not None
    assert response.status == 404
    assert blocking_violations(page) == []


def test_live_refresh_keeps_focus_and_announces(page: Page, dashboard: Dashboard) -> None:
    """A focused Acknowledge button stays focused, the very same element, through two
    refreshes: one that adds an alert above its row, one that changes that alert; the
    live region says what happened each time."""
    token = dashboard.world.tokens["clinic_a"]
    log_in(page, dashboard, "clinic_a")
    page.goto(dashboard.url("/alerts?status=all"))
    focused_id = page.locator("tr[data-alert][data-status=open]").first.get_attribute("data-alert")
    page.locator(f"tr[data-alert='{focused_id}'] button").focus()
    page.evaluate("() => { window.focusedBefore = document.activeElement; }")
    assert page.evaluate("() => document.activeElement.textContent") == "Acknowledge"
    rows_before = page.locator("tr[data-alert]").count()

    device_id = _raise_fault(dashboard)
    new_row = page.locator("tr[data-alert]").filter(has_text=device_id)
    new_row.wait_for(timeout=_REFRESH_WAIT_MS)
    assert page.locator("tr[data-alert]").count() == rows_before + 1
    assert page.evaluate("() => document.activeElement === window.focusedBefore")
    page.wait_for_function(
        "() => document.getElementById('announcer').textContent === '1 new alert'"
    )

    new_id = new_row.get_attribute("data-alert")
    _api_post(dashboard, token, f"/alerts/{new_id}/acknowledge")
    page.locator(f"tr[data-alert='{new_id}'][data-status=acknowledged]").wait_for(
        timeout=_REFRESH_WAIT_MS
    )
    assert page.evaluate("() => document.activeElement === window.focusedBefore")
    assert page.evaluate("() => window.focusedBefore.isConnected")
    assert page.evaluate("() => document.activeElement.closest('tr').dataset.alert") == focused_id
    page.wait_for_function(
        "() => document.getElementById('announcer').textContent === '1 alert changed'"
    )
    assert page.locator("#announcer").get_attribute("aria-live") == "polite"
    assert re.fullmatch(r"Updated \d\d:\d\d:\d\d UTC", page.locator("#live-state").inner_text())


def test_pause_holds_the_page_until_resumed(page: Page, dashboard: Dashboard) -> None:
    """Paused, the page stays as it was though an alert was raised; resumed, it catches up."""
    log_in(page, dashboard, "clinic_a")
    page.goto(dashboard.url("/alerts?status=all"))

    page.get_by_role("button", name="Pause updates").click()
    device_id = _raise_fault(dashboard)
    new_row = page.locator("tr[data-alert]").filter(has_text=device_id)
    page.wait_for_timeout(7_000)  # more than one refresh period
    assert new_row.count() == 0
    assert page.locator("#live-state").inner_text().startswith("Updates paused")

    page.get_by_role("button", name="Resume updates").click()
    new_row.wait_for(timeout=_REFRESH_WAIT_MS)
    assert page.locator("#live-state").inner_text().startswith("Updated")


def test_typing_pauses_the_refresh(page: Page, dashboard: Dashboard) -> None:
    """While a note is being typed the page holds still though an alert was raised:
    nothing typed is lost or moved, and the bar says why it waits."""
    log_in(page, dashboard, "clinic_a")
    page.goto(dashboard.url("/alerts?status=all"))
    note = page.locator("tr[data-alert][data-status=open] input[name=note]").first
    note.type("checked the vacuum line")
    page.locator("#live-state").filter(has_text="wait while you edit").wait_for()

    device_id = _raise_fault(dashboard)
    page.wait_for_timeout(7_000)  # more than one refresh period
    assert page.locator("tr[data-alert]").filter(has_text=device_id).count() == 0
    assert note.input_value() == "checked the vacuum line"
    assert page.evaluate("() => document.activeElement.name") == "note"


_MORPH_CASES = """() => {
    const parse = (html) => {
        const holder = document.createElement("div");
        holder.innerHTML = html;
        return holder;
    };
    const old = parse(`<ul><li data-key="a"><button>A</button></li>
        <li data-key="b"><button id="b">B</button></li></ul>
        <details><summary>More</summary>hidden</details>
        <input id="typed" value="server"><p id="words">select these words</p>`);
    document.body.append(old);
    const button = document.getElementById("b");
    const list = old.querySelector("ul");
    const items = () => Array.from(list.children).map((li) => li.dataset.key);
    button.focus();
    old.querySelector("details").open = true;
    document.getElementById("typed").value = "typed by hand";
    window.corelineMorph(old, parse(`<ul><li data-key="n">new</li>
        <li data-key="b"><button id="b">B again</button></li>
        <li data-key="a"><button>A</button></li></ul>
        <details><summary>More</summary>hidden</details>
        <input id="typed" value="server, later"><p id="words">select these words</p>`));
    const reordered = {
        items: items(), same: document.getElementById("b") === button,
        focused: document.activeElement === button, text: button.textContent,
        open: old.querySelector("details").open,
        value: document.getElementById("typed").value,
        default: document.getElementById("typed").defaultValue,
    };
    const words = document.getElementById("words");
    document.getSelection().selectAllChildren(words);
    window.corelineMorph(old, parse(`<ul><li data-key="b"><button id="b">B again</button></li></ul>
        <details><summary>More</summary>hidden</details>
        <input id="typed" value="server, later"><p id="words">select these words</p>`));
    const kept = {
        items: items(), selection: document.getSelection().toString(),
        words: document.getElementById("words") === words,
    };
    old.remove();
    return [reordered, kept];
}"""


def test_morph_keeps_what_the_reader_did(page: Page, dashboard: Dashboard) -> None:
    """The refresh's morph keeps keyed rows' identity through insertion, reordering and
    removal, keeps the focus on the same button, an opened <details> open, a typed
    value (taking the server's as the new default only), and a text selection."""
    page.goto(dashboard.url("/login"))
    reordered, kept = page.evaluate(_MORPH_CASES)

    assert reordered == {
        "items": ["n", "b", "a"], "same": True, "focused": True, "text": "B again",
        "open": True, "value": "typed by hand", "default": "server, later",
    }  # fmt: skip
    assert kept == {"items": ["b"], "selection": "select these words", "words": True}


@pytest.mark.parametrize("role", ROLES)
def test_every_page_fits_360_px(
    page: Page, dashboard: Dashboard, role: str, tmp_path: Path
) -> None:
    """At 360×740 no page scrolls sideways: the document is no wider than the viewport
    and so is a full-page screenshot; the navigation folds behind a Menu button."""
    page.set_viewport_size(NARROW)
    log_in(page, dashboard, role)
    paths = dashboard_pages(page, dashboard)
    assert len(paths) >= 3, paths

    too_wide: dict[str, tuple[int, int]] = {}
    found: dict[str, list[str]] = {}
    for number, path in enumerate(paths):
        page.goto(dashboard.url(path))
        scroll_width = page.evaluate("() => document.documentElement.scrollWidth")
        shot = tmp_path / f"page-{number}.png"
        page.screenshot(path=shot, full_page=True)
        if scroll_width > NARROW["width"] or _png_width(shot) != NARROW["width"]:
            too_wide[path] = (scroll_width, _png_width(shot))
        # Narrow, tables scroll in their own box: each must still be reachable.
        if blocking := blocking_violations(page):
            found[path] = [str(violation) for violation in blocking]
    assert too_wide == {}
    assert found == {}, "\n".join(f"{path}: {v}" for path, vs in found.items() for v in vs)

    page.goto(dashboard.url("/"))
    nav_link = page.locator("#site-nav a").first
    assert nav_link.is_hidden()
    menu = page.get_by_role("button", name="Menu")
    menu.click()
    assert menu.get_attribute("aria-expanded") == "true"
    assert nav_link.is_visible()
    page.keyboard.press("Escape")
    assert nav_link.is_hidden()


def test_sign_in_fits_360_px(page: Page, dashboard: Dashboard, tmp_path: Path) -> None:
    page.set_viewport_size(NARROW)
    page.goto(dashboard.url("/login"))
    shot = tmp_path / "login.png"
    page.screenshot(path=shot, full_page=True)
    assert page.evaluate("() => document.documentElement.scrollWidth") <= NARROW["width"]
    assert _png_width(shot) == NARROW["width"]


def test_acknowledge_with_the_keyboard_alone(page: Page, dashboard: Dashboard) -> None:
    """Tab first reaches a visible skip link; tabbing on reaches an alert's Acknowledge
    button, every step showing a focus ring, and Enter acknowledges that alert."""
    log_in(page, dashboard, "clinic_a")
    page.goto(dashboard.url("/alerts?status=open"))
    current = page.locator("#site-nav a[aria-current=page]")
    assert current.evaluate_all("links => links.map(link => link.textContent)") == ["Alerts"]
    page.keyboard.press("Tab")
    assert page.evaluate("() => document.activeElement.textContent") == "Skip to the content"
    box = page.locator(".skip-link").bounding_box()
    assert box is not None
    assert box["y"] >= 0

    focused: dict[str, Any] = {}
    for _ in range(200):
        page.keyboard.press("Tab")
        focused = page.evaluate(
            """() => { const el = document.activeElement;
                       return { tag: el.tagName, text: el.textContent,
                                outline: getComputedStyle(el).outlineStyle,
                                alert: el.closest('tr')?.dataset.alert ?? null }; }"""
        )
        assert focused["tag"] != "BODY", "the focus left the page"
        assert focused["outline"] != "none", focused
        if focused["tag"] == "BUTTON" and focused["text"] == "Acknowledge":
            break
    else:
        pytest.fail("no Acknowledge button within 200 presses of Tab")
    alert_id = focused["alert"]
    assert alert_id

    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert re.search(r"/alerts\?status=open", page.url), page.url
    reload_until(
        page,
        dashboard.url("/alerts?status=all"),
        f"tr[data-alert='{alert_id}'][data-status=acknowledged]",
    )
    acknowledged = page.locator(f"tr[data-alert='{alert_id}']")
    assert acknowledged.get_attribute("data-status") == "acknowledged"


def test_printed_session_audit(page: Page, dashboard: Dashboard) -> None:
    """Printed, a session's audit drops the navigation, the live bar and the buttons,
    keeps every table row, and is black on white."""
    log_in(page, dashboard, "auditor")
    page.goto(dashboard.url("/sessions"))
    page.locator("[data-testid=sessions] tr[data-session] a").first.click()
    page.wait_for_url(re.compile(r"/sessions/[^/]+$"))
    rows_on_screen = page.locator("main tr").count()
    assert page.locator("#site-nav").is_visible()

    page.emulate_media(media="print")

    assert page.locator("#site-nav").is_hidden()
    assert page.locator("header.top").is_hidden()
    assert page.locator("#live-bar").is_hidden()
    assert all(not button.is_visible() for button in page.locator("button").all())
    assert page.locator("main h1").is_visible()
    assert page.locator("main tr").count() == rows_on_screen
    assert all(row.is_visible() for row in page.locator("main tr").all())
    colours = page.evaluate(
        """() => [getComputedStyle(document.body).backgroundColor,
                  getComputedStyle(document.querySelector('main h1')).color]"""
    )
    assert colours == ["rgb(255, 255, 255)", "rgb(0, 0, 0)"]
    pdf = page.pdf(format="A4")
    assert pdf.startswith(b"%PDF")


_raised = itertools.count(901)


def _raise_fault(dashboard: Dashboard) -> str:
    """A handpiece new to clinic A reports a fault now, which raises an alert."""
    device_id = f"HP-000{next(_raised)}"
    store = open_event_store(dashboard.world.database_url)
    try:
        commands.register_device(store, device_id, "CX-2", "fleet-ops")
        commands.assign_device(store, device_id, CLINIC_A, "fleet-ops")
        writer = HandpieceWriter(store, device_id, clock=datetime.now(UTC) - timedelta(minutes=5))
        writer.fault("E-VAC-LOW", "vacuum below 40 kPa")
    finally:
        store.close()
    return device_id


def _api_post(dashboard: Dashboard, token: str, path: str) -> None:
    response = httpx.post(
        dashboard.url(f"/api/v1{path}"), headers={"Authorization": f"Bearer {token}"}, json={}
    )
    assert response.status_code == 202, response.text


def _png_width(path: Path) -> int:
    """The width in a PNG's header (its IHDR chunk, right after the signature)."""
    header = path.read_bytes()[:24]
    assert header.startswith(b"\x89PNG\r\n\x1a\n")
    width: int = struct.unpack(">I", header[16:20])[0]
    return width
