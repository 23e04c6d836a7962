"""A device's telemetry rollups over a window, cut to what the principal may see.

Custody (DESIGN §9): a clinic sees a device's telemetry only from while it held the
device.  Heartbeats carry no seq, so the custody intervals (``scope.custodies``, the
same folded intervals every other custody check reads) are placed in time by the
platform's receive times of the assignments that opened and closed them; a clinic
sees whole buckets that lie inside one of its intervals, never a bucket straddling a
handover.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Final

import orjson
from pydantic import BaseModel, Field
from sqlalchemy import ColumnElement, Connection, Table, and_, false, func, or_, select, true

from schemas.streams import device_stream
from services.api.access import Principal
from services.api.queries.scope import custodies, event_scope
from services.api.queries.tables import stored_events, utc
from services.eventstore import EventStore
from services.projections.telemetry import Bucket, Metric, Resolution, coarsen
from services.projections.telemetry_store import (
    TELEMETRY,
    TIMESCALE_VIEW,
    row_bucket,
    telemetry_table,
    timescale_present,
)

OVERTEMPERATURE: Final = "E-OVERTEMP"


class TelemetryRange(StrEnum):
    """The windows a chart offers; each reads one stored resolution and shows points
    of a width that keeps a chart to a few hundred points."""

    HOUR = "1h"
    DAY = "24h"
    WEEK = "7d"
    MONTH = "30d"
    YEAR = "365d"


@dataclass(frozen=True, slots=True)
class RangePlan:
    span: timedelta
    stored: Resolution
    point_s: int


PLANS: Final = {
    TelemetryRange.HOUR: RangePlan(timedelta(hours=1), Resolution.MINUTE, 60),
    TelemetryRange.DAY: RangePlan(timedelta(hours=24), Resolution.MINUTE, 300),
    TelemetryRange.WEEK: RangePlan(timedelta(days=7), Resolution.HOUR, 3600),
    TelemetryRange.MONTH: RangePlan(timedelta(days=30), Resolution.HOUR, 4 * 3600),
    TelemetryRange.YEAR: RangePlan(timedelta(days=365), Resolution.HOUR, 86_400),
}


class TelemetryPoint(BaseModel):
    start: datetime = Field(description="Start of the point's span (UTC).")
    min: float
    max: float
    mean: float
    count: int = Field(description="Samples that carried the metric.")


class TelemetrySeries(BaseModel):
    device_id: str
    metric: Metric
    unit: str
    range: TelemetryRange
    resolution_s: int = Field(description="Width of each point's span, in seconds.")
    window_start: datetime
    window_end: datetime
    points: list[TelemetryPoint]


class FaultMark(BaseModel):
    seq: int
    occurred_at: datetime
    severity: str
    message: str


_timescale_views: dict[int, bool] = {}


def _source(connection: Connection) -> Table:
    """``read_telemetry``, or on TimescaleDB its continuous aggregates' view."""
    engine_key = id(connection.engine)
    if engine_key not in _timescale_views:
        _timescale_views[engine_key] = timescale_present(connection)
    return telemetry_table(TIMESCALE_VIEW) if _timescale_views[engine_key] else TELEMETRY


def telemetry_series(
    connection: Connection,
    principal: Principal,
    device_id: str,
    metric: Metric,
    window: TelemetryRange,
    end: datetime | None,
    now: datetime,
) -> TelemetrySeries:
    """The device's ``metric`` over ``window`` ending at ``end``: by default now, or the
    end of its newest bucket when the device's clock runs ahead of the platform's."""
    plan = PLANS[window]
    table = _source(connection)
    seen = _held(connection, principal, device_id, table, int(plan.stored))
    if end is None:
        newest = connection.execute(
            select(func.max(table.c.bucket_start)).where(
                table.c.device_id == device_id,
                table.c.resolution_s == int(plan.stored),
                seen,
            )
        ).scalar()
        end = now
        if newest is not None:
            newest_end = _aware(newest) + timedelta(seconds=int(plan.stored))
            end = max(now, newest_end)
    end = utc(end)
    start = end - plan.span
    rows = connection.execute(
        select(table)
        .where(
            table.c.device_id == device_id,
            table.c.resolution_s == int(plan.stored),
            table.c.bucket_start >= start,
            table.c.bucket_start < end,
            seen,
        )
        .order_by(table.c.bucket_start)
    )
    buckets = coarsen([row_bucket(row) for row in rows], plan.point_s)
    return TelemetrySeries(
        device_id=device_id,
        metric=metric,
        unit=metric.unit,
        range=window,
        resolution_s=plan.point_s,
        window_start=start,
        window_end=end,
        points=_points(buckets, metric),
    )


def _points(buckets: Sequence[Bucket], metric: Metric) -> list[TelemetryPoint]:
    points = []
    for bucket in buckets:
        stat = bucket.stat(metric)
        if stat is not None:
            points.append(
                TelemetryPoint(
                    start=bucket.start,
                    min=stat.low,
                    max=stat.high,
                    mean=round(stat.mean, 3),
                    count=stat.count,
                )
            )
    return points


def _held(
    connection: Connection, principal: Principal, device_id: str, table: Table, width_s: int
) -> ColumnElement[bool]:
    """Buckets inside the principal's custody of the device (all for a fleet-wide one)."""
    if principal.clinic_id is None:
        return true()
    custody = custodies(connection, [device_id])[device_id]
    spans = []
    for interval in custody.intervals:
        if interval.clinic_id != principal.clinic_id:
            continue
        inside = table.c.bucket_start >= utc(interval.assigned_at)
        if interval.released_at is not None:
            last_start = utc(interval.released_at) - timedelta(seconds=width_s)
            inside = and_(inside, table.c.bucket_start <= last_start)
        spans.append(inside)
    return or_(*spans) if spans else false()


def overtemperature_faults(
    connection: Connection,
    store: EventStore,
    principal: Principal,
    device_id: str,
    start: datetime,
    end: datetime,
) -> list[FaultMark]:
    """The device's ``E-OVERTEMP`` faults raised in ``[start, end)`` (device time) that
    the principal sees, oldest first."""
    rows = connection.execute(
        select(stored_events.c.seq, stored_events.c.body)
        .where(
            stored_events.c.stream_id == device_stream(device_id),
            stored_events.c.type == "fault.raised",
        )
        .order_by(stored_events.c.seq)
    )
    marks = []
    for seq, body in rows:
        event = orjson.loads(body)
        data = event.get("data", {})
        if data.get("fault_code") != OVERTEMPERATURE:
            continue
        occurred = datetime.fromisoformat(event["occurred_at"])
        if start <= occurred < end:
            marks.append(
                FaultMark(
                    seq=int(seq),
                    occurred_at=occurred,
                    severity=str(data.get("severity", "")),
                    message=str(data.get("message", "")),
                )
            )
    scope = event_scope(connection, store, principal, device_id)
    return [mark for mark in marks if scope is None or scope.sees(mark.seq, None)]


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
