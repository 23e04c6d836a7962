"""A device's telemetry: battery, temperature and signal rollups over a window."""

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query

from schemas.fields import DEVICE_ID_PATTERN
from services.api.deps import Db, DeviceReader
from services.api.problems import ERROR_RESPONSES, bad_request, not_found
from services.api.queries import devices as device_queries
from services.api.queries import telemetry as queries
from services.projections.telemetry import Metric

router = APIRouter(prefix="/devices", tags=["devices"], responses=ERROR_RESPONSES)


@router.get("/{device_id}/telemetry", summary="A device's telemetry")
def get_telemetry(
    who: DeviceReader,
    db: Db,
    device_id: Annotated[str, Path(pattern=DEVICE_ID_PATTERN, examples=["HP-000123"])],
    metric: Annotated[Metric, Query(description="battery (%), temperature (°C), signal (dBm)")],
    window: Annotated[
        queries.TelemetryRange,
        Query(alias="range", description="The window: 1h, 24h, 7d, 30d or 365d."),
    ] = queries.TelemetryRange.DAY,
    to: Annotated[
        datetime | None,
        Query(description="End of the window (default: now, or the newest sample when later)."),
    ] = None,
) -> queries.TelemetrySeries:
    """Points of the metric's rollups, oldest first: per point the minimum, maximum and
    mean of the samples in its span and how many there were (spans without samples
    are left out).  1h and 24h read the one-minute rollups (kept 7 days), the longer
    windows the one-hour rollups (kept 400 days); see docs/telemetry.md.  A clinic
    sees the device it holds, and of it only the spans from while it held it."""
    if to is not None and to.tzinfo is None:
        raise bad_request("`to` needs a time zone, e.g. 2026-11-24T00:00:00Z")
    if not device_queries.device_visible(db, who, device_id):
        raise not_found("device")
    return queries.telemetry_series(db, who, device_id, metric, window, to, datetime.now(UTC))
