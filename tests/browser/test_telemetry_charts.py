"""A device's telemetry charts in a real browser: every point drawn is the rollup API's
point, over-temperature faults are marked, and the charts fit a 360 px screen."""

from datetime import UTC, datetime, timedelta

import httpx
import orjson
import pytest
from playwright.sync_api import Page

from schemas import Heartbeat
from schemas.streams import device_stream
from services.eventstore import open_event_store
from services.projections.read_store import ReadModelStore
from services.projections.telemetry_store import TelemetryRollups
from simulation import HandpieceSimulator
from tests.browser.conftest import Dashboard
from tests.browser.test_dashboard import log_in
from tests.support import api_world
from tests.support.api_world import World

DEVICE = "HP-000101"


@pytest.fixture(scope="module", autouse=True)
def heartbeats(world: World) -> int:
    """Eight hours of the world's handpieces' heartbeats (same seed), ending 15 hours
    before now, rolled up as the projector's tick does: inside the 24-hour window at
    any time of day (the page's windows end now), and before the world's assignments,
    which it made just now."""
    store = open_event_store(world.database_url)
    read_models = ReadModelStore(world.database_url)
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=23)
    end = start + timedelta(hours=8)
    recorded = 0
    try:
        for device_id in api_world.DEVICES:
            simulator = HandpieceSimulator(device_id, 7, start, api_world.PROFILE)
            beats = [item for item in simulator.advance(end) if isinstance(item, Heartbeat)]
            store.record_heartbeats(beats)
            recorded += len(beats)
        TelemetryRollups(read_models.engine, read_models.backend).tick(
            datetime.now(UTC), force=True
        )
    finally:
        store.close()
        read_models.close()
    return recorded


def _api_points(
    dashboard: Dashboard, metric: str, window: str, end: str
) -> list[tuple[str, float]]:
    response = httpx.get(
        dashboard.url(f"/api/v1/devices/{DEVICE}/telemetry"),
        params={"metric": metric, "range": window, "to": end},
        headers={"Authorization": f"Bearer {dashboard.world.tokens['manufacturer']}"},
    )
    response.raise_for_status()
    return [(point["start"], point["mean"]) for point in response.json()["points"]]


def _drawn_points(page: Page, metric: str) -> list[tuple[str, float]]:
    circles = page.locator(f"[data-testid=trend-{metric}] svg circle.point")
    return [
        (str(circle.get_attribute("data-start")), float(str(circle.get_attribute("data-mean"))))
        for circle in circles.all()
    ]


@pytest.mark.parametrize("window", ["24h", "7d", "30d"])
def test_each_chart_draws_the_rollup_apis_points(
    page: Page, dashboard: Dashboard, window: str, heartbeats: int
) -> None:
    """Battery, temperature and signal: the points on the chart are the API's points for
    the same window, one for one, and the table lists as many."""
    assert heartbeats > 0
    log_in(page, dashboard, "manufacturer")
    page.goto(dashboard.url(f"/devices/{DEVICE}"))
    page.click("[data-testid=telemetry-link]")
    page.click(f"[data-testid=telemetry-windows] [data-range='{window}']")
    for metric in ("battery", "temperature", "signal"):
        figure = page.locator(f"[data-testid=trend-{metric}]")
        end = str(figure.get_attribute("data-window-end"))
        expected = _api_points(dashboard, metric, window, end)
        assert expected, f"no {metric} points in {window}"
        drawn = [(datetime.fromisoformat(s), m) for s, m in _drawn_points(page, metric)]
        assert drawn == [(datetime.fromisoformat(s), m) for s, m in expected]
        rows = page.locator(f"[data-testid=values-{metric}] tbody tr")
        assert rows.count() == len(expected)
    svg = page.locator("[data-testid=trend-temperature] svg")
    assert "°C" in (svg.get_attribute("aria-label") or "")
    assert "time (UTC)" in svg.inner_html()


def test_over_temperature_faults_are_marked_on_the_temperature_trend(
    page: Page, dashboard: Dashboard
) -> None:
    """One dashed mark per ``E-OVERTEMP`` fault the device raised in the window, and none
    on the other charts."""
    store = open_event_store(dashboard.world.database_url)
    try:
        stored = store.read_stream(device_stream(DEVICE))
    finally:
        store.close()
    overheats = [
        event
        for event in stored
        if event.type == "fault.raised"
        and orjson.loads(event.body)["data"]["fault_code"] == "E-OVERTEMP"
    ]
    assert overheats, "the simulated story overheats this handpiece once"
    log_in(page, dashboard, "manufacturer")
    page.goto(dashboard.url(f"/devices/{DEVICE}/telemetry?range=7d"))
    marks = page.locator("[data-testid=trend-temperature] svg line.mark")
    assert marks.count() == len(overheats)
    assert page.locator("[data-testid=trend-battery] svg line.mark").count() == 0


def test_the_charts_fit_a_360_px_screen(page: Page, dashboard: Dashboard) -> None:
    """At 360 px wide every chart scales into the viewport instead of overflowing it."""
    page.set_viewport_size({"width": 360, "height": 740})
    log_in(page, dashboard, "manufacturer")
    page.goto(dashboard.url(f"/devices/{DEVICE}/telemetry?range=24h"))
    for metric in ("battery", "temperature", "signal"):
        box = page.locator(f"[data-testid=trend-{metric}] svg").bounding_box()
        assert box is not None
        assert 200 < box["width"] <= 360
        assert box["x"] >= 0
        assert box["x"] + box["width"] <= 360


def test_a_clinic_sees_only_its_custody_and_not_another_clinics_device(
    page: Page, dashboard: Dashboard
) -> None:
    """Clinic A opens its own handpiece's telemetry, but sees none of the samples taken
    before the platform assigned the handpiece to it (this world's heartbeats end 15 hours
    ago, its assignments were made just now), while the manufacturer sees them; clinic B's
    handpiece is a 404 page with no telemetry section."""
    log_in(page, dashboard, "clinic_a")
    own = page.goto(dashboard.url(f"/devices/{DEVICE}/telemetry?range=7d"))
    assert own is not None
    assert own.status == 200
    assert page.locator("[data-testid=trend-battery] [data-testid=no-telemetry]").count() == 1
    assert page.locator("[data-testid=telemetry] svg").count() == 0
    assert _api_points(dashboard, "battery", "7d", datetime.now(UTC).isoformat())
    other = page.goto(dashboard.url("/devices/HP-000201/telemetry?range=7d"))
    assert other is not None
    assert other.status == 404
    assert page.locator("[data-testid=telemetry]").count() == 0


def test_an_unknown_window_is_refused_with_400(page: Page, dashboard: Dashboard) -> None:
    """A window the page does not offer is a 400 page naming the ones it does."""
    log_in(page, dashboard, "manufacturer")
    response = page.goto(dashboard.url(f"/devices/{DEVICE}/telemetry?range=2d"))
    assert response is not None
    assert response.status == 400
    assert "24h, 7d or 30d" in page.content()
