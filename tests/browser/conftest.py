"""The dashboard as a browser sees it: ``coreline api`` serving a seeded SQLite world
over real HTTP, a projector folding in this process (so acknowledgements land), and
Debian's Chromium driven headless by Playwright."""

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from datetime import time as clock_time
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, sync_playwright

from services.eventstore import open_event_store
from services.projections.read_store import ReadModelStore
from services.projector import Projector
from tests.support import api_world
from tests.support.accounts import Account, create_accounts
from tests.support.api_client import MASTER_KEY
from tests.support.api_world import World, build_world
from tests.support.platform_processes import serving_api
from tests.support.postgres import free_port

CHROMIUM = Path("/usr/bin/chromium")
# Without the background-networking flags Chromium dials out at start-up, and this
# machine's closed network refuses those connections.
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
PAGE_TIMEOUT_MS = 10_000


@dataclass(frozen=True)
class Dashboard:
    """A running dashboard: where it is, and the world it serves."""

    base_url: str
    world: World
    accounts: dict[str, Account]
    """People to sign in as, by the world's token names (manufacturer, clinic_a, …)."""

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    """The two-clinic fleet in a SQLite file, worked yesterday."""
    database_url = f"sqlite:///{tmp_path_factory.mktemp('dashboard') / 'coreline.db'}"
    # The device page charts the last 30 days by the wall clock, so a fleet that worked
    # on a fixed date would fall off the chart within weeks; same hours, recent day.
    yesterday = datetime.now(UTC).date() - timedelta(days=1)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(api_world, "START", datetime.combine(yesterday, clock_time(8), UTC))
        return build_world(database_url)


@pytest.fixture(scope="module")
def projector(world: World) -> Iterator[None]:
    """The projector folding in a thread, as ``coreline projector`` would, settled on the
    wall clock before any page is read (its clock rules may raise alerts)."""
    store = open_event_store(world.database_url)
    read_models = ReadModelStore(world.database_url)
    folding = Projector(store, read_models)
    while folding.step():
        pass
    folding.tick()
    stop = threading.Event()
    thread = threading.Thread(target=folding.run, args=(stop, 0.2), name="projector")
    thread.start()
    yield
    stop.set()
    thread.join(timeout=10)
    store.close()
    read_models.close()
    assert not thread.is_alive(), "the projector thread did not stop"


@pytest.fixture(scope="module")
def dashboard(
    world: World, projector: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Dashboard]:
    accounts = create_accounts(world.database_url, MASTER_KEY)
    """``coreline api`` on a free loopback port, serving the world until the module ends."""
    port = free_port()
    log_path = tmp_path_factory.mktemp("api") / "api.log"
    # The key the accounts' TOTP secrets were sealed with (derived from this one).
    with serving_api(
        port, log_path, database_url=world.database_url, webhook_master_key=MASTER_KEY.decode()
    ):
        yield Dashboard(f"http://127.0.0.1:{port}", world, accounts)


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="session")
def browser(playwright: Playwright) -> Iterator[Browser]:
    """Debian's Chromium, headless (Playwright's own browsers cannot be downloaded here)."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium")
    launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    yield launched
    launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh page in a context of its own: no cookie from another test."""
    context: BrowserContext = browser.new_context(accept_downloads=True)
    context.set_default_timeout(PAGE_TIMEOUT_MS)
    opened = context.new_page()
    yield opened
    context.close()


FOLDED_WAIT_MS = 15_000


def reload_until(page: Page, url: str, ready: str, within_ms: int = FOLDED_WAIT_MS) -> None:
    """Reload ``url`` until the selector ``ready`` matches on it (the projector and the
    delivery loop fold within a second); the caller's expectations then say what is
    missing if it never does."""
    deadline = datetime.now(UTC) + timedelta(milliseconds=within_ms)
    while True:
        page.goto(url)
        if page.locator(ready).count() > 0 or datetime.now(UTC) > deadline:
            return
        page.wait_for_timeout(300)
