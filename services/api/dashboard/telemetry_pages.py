"""A device's telemetry page: battery, temperature and signal trends over a chosen
window, drawn on the server (``charts.trend_line``) from the same rollups and the same
custody cut as ``GET /api/v1/devices/{id}/telemetry``, with over-temperature faults
marked on the temperature trend and every value also in a table."""

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Final

from fastapi import APIRouter, Depends
from fastapi.responses import HTMLResponse, Response
from fastapi.templating import Jinja2Templates
from markupsafe import Markup
from starlette.requests import Request

from services.api.access import Action, Principal
from services.api.dashboard.charts import TrendMark, TrendPoint, trend_line
from services.api.dashboard.routes import PageRefused, viewer
from services.api.deps import ApiContext, context
from services.api.queries import devices as device_queries
from services.api.queries.telemetry import (
    FaultMark,
    TelemetryRange,
    TelemetrySeries,
    overtemperature_faults,
    telemetry_series,
)
from services.projections.telemetry import Metric

_templates: Final = Jinja2Templates(directory=Path(__file__).parent / "templates")
_WINDOWS: Final = (TelemetryRange.DAY, TelemetryRange.WEEK, TelemetryRange.MONTH)
_TITLES: Final = {
    Metric.BATTERY: "Battery",
    Metric.TEMPERATURE: "Temperature",
    Metric.SIGNAL: "Signal strength",
}
router = APIRouter(include_in_schema=False, default_response_class=HTMLResponse)


@dataclass(frozen=True, slots=True)
class TrendView:
    """One metric's chart and the rows of its text alternative."""

    metric: Metric
    title: str
    series: TelemetrySeries
    chart: Markup
    faults: list[FaultMark]


@router.get("/devices/{device_id}/telemetry")
def telemetry_page(
    request: Request,
    who: Annotated[Principal, Depends(viewer)],
    api: Annotated[ApiContext, Depends(context)],
    device_id: str,
    range: str = TelemetryRange.DAY.value,  # noqa: A002 - the query parameter's name
) -> Response:
    if not who.may(Action.READ_DEVICES):
        raise PageRefused(403, f"A {who.role.value} token may not see this page.")
    window = next((choice for choice in _WINDOWS if choice.value == range), None)
    if window is None:
        raise PageRefused(400, "Choose a window of 24h, 7d or 30d.")
    now = datetime.now(UTC)
    with api.engine.connect() as db:
        if not device_queries.device_visible(db, who, device_id):
            raise PageRefused(404, "There is no such device, or it is not yours to see.")
        trends = []
        for metric in Metric:
            series = telemetry_series(db, who, device_id, metric, window, None, now)
            faults: list[FaultMark] = []
            if metric is Metric.TEMPERATURE:
                with api.stores.borrow() as store:
                    faults = overtemperature_faults(
                        db, store, who, device_id, series.window_start, series.window_end
                    )
            trends.append(_view(metric, series, faults))
    return _templates.TemplateResponse(
        request,
        "device_telemetry.html",
        {
            "who": who, "now": now, "device_id": device_id, "trends": trends,
            "window": window, "windows": _WINDOWS,
        },
    )  # fmt: skip


def _view(metric: Metric, series: TelemetrySeries, faults: list[FaultMark]) -> TrendView:
    points = [TrendPoint(p.start, p.min, p.mean, p.max) for p in series.points]
    marks = [
        TrendMark(
            fault.occurred_at,
            f"{fault.severity} E-OVERTEMP at {fault.occurred_at:%Y-%m-%d %H:%M} UTC: "
            f"{fault.message}",
        )
        for fault in faults
    ]
    chart = trend_line(
        points,
        title=_TITLES[metric],
        unit=metric.unit,
        window=(series.window_start, series.window_end),
        point_s=series.resolution_s,
        marks=marks,
    )
    # Built from numbers and escaped text only.
    return TrendView(metric, _TITLES[metric], series, Markup(chart), faults)  # noqa: S704
