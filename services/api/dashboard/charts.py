"""Charts drawn on the server as SVG: no script library, nothing fetched elsewhere."""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape

from services.api.models import UsageDay

_WIDTH, _HEIGHT, _BOTTOM, _TOP = 720, 180, 22, 14


_LEFT = 56
"""Room for the y axis's tick labels and its title."""


def usage_bars(days: Sequence[UsageDay]) -> str:
    """Cores per day as bars, each with a tooltip of the day's sessions and cores, on a
    y axis of cores per day (ticks at round numbers) and an x axis of dates."""
    if not days:
        return ""
    # Bars scale to the busiest day, so it spans the plot; ticks fall on round numbers.
    top = max(day.cores for day in days)
    step = _tick_step(top)
    width = _WIDTH - _LEFT
    slot = width / len(days)
    plot = _HEIGHT - _BOTTOM - _TOP
    bars = []
    for index, day in enumerate(days):
        height = plot * day.cores / top if top else 0.0
        x = _LEFT + index * slot + slot * 0.15
        y = _TOP + plot - height
        title = f"{day.day}: {day.sessions} sessions, {day.cores:,} cores"
        bars.append(
            f'<rect class="bar" x="{x:.1f}" y="{y:.1f}" width="{slot * 0.7:.1f}" '
            f'height="{max(height, 0.5):.1f}"><title>{escape(title)}</title></rect>'
        )
    ticks = []
    for value in range(0, top + 1, step):
        y = _TOP + plot - (plot * value / top if top else 0.0)
        ticks.append(
            f'<line class="grid-line" x1="{_LEFT}" x2="{_WIDTH}" y1="{y:.1f}" y2="{y:.1f}"/>'
            f'<text x="{_LEFT - 4}" y="{y + 3:.1f}" class="axis end">{value:,}</text>'
        )
    labels = [
        f'<text x="{_LEFT + index * slot + slot / 2:.1f}" y="{_HEIGHT - 6}" class="axis">'
        f"{escape(day.day[5:])}</text>"
        for index, day in enumerate(days)
        if index % max(1, len(days) // 6) == 0
    ]
    axes = (
        f'<line class="axis-line" x1="{_LEFT}" x2="{_LEFT}" y1="{_TOP}" y2="{_TOP + plot}"/>'
        f'<line class="axis-line" x1="{_LEFT}" x2="{_WIDTH}" y1="{_TOP + plot}" '
        f'y2="{_TOP + plot}"/>'
        f'<text class="axis-title" x="10" y="{_TOP + plot / 2:.1f}" '
        f'transform="rotate(-90 10 {_TOP + plot / 2:.1f})" text-anchor="middle">cores/day</text>'
    )
    summary = (
        f"Cores per day from {days[0].day} to {days[-1].day} (UTC days); "
        f"busiest day {max(day.cores for day in days):,} cores"
    )
    return (
        f'<svg class="chart" viewBox="0 0 {_WIDTH} {_HEIGHT}" role="img" '
        f'aria-label="{escape(summary)}">{axes}{"".join(ticks)}{"".join(bars)}'
        f"{''.join(labels)}</svg>"
    )


def _tick_step(peak: int) -> int:
    """1, 2 or 5 × 10ⁿ: at most five steps up to ``peak`` (one for an idle month)."""
    if peak <= 0:
        return 1
    magnitude = 1
    while True:
        for factor in (1, 2, 5):
            if peak // (factor * magnitude) <= 4:
                return factor * magnitude
        magnitude *= 10


_TREND_WIDTH, _TREND_HEIGHT = 720, 220
_TREND_LEFT, _TREND_RIGHT, _TREND_TOP, _TREND_BOTTOM = 56, 12, 16, 34


@dataclass(frozen=True, slots=True)
class TrendPoint:
    """One point of a trend: its span's start, and the min, mean and max over it."""

    start: datetime
    low: float
    mean: float
    high: float


@dataclass(frozen=True, slots=True)
class TrendMark:
    """A moment to mark on a trend's time axis (an over-temperature fault, say)."""

    at: datetime
    label: str


def trend_line(
    points: Sequence[TrendPoint],
    *,
    title: str,
    unit: str,
    window: tuple[datetime, datetime],
    point_s: int,
    marks: Sequence[TrendMark] = (),
) -> str:
    """A metric over a time window: the mean as a line, the min–max range as a band
    behind it, gaps (no samples for over two points' width) left open, marks as
    vertical lines.  The axes name the unit and the time zone (UTC)."""
    start, end = window
    span_s = max((end - start).total_seconds(), 1.0)
    plot_w = _TREND_WIDTH - _TREND_LEFT - _TREND_RIGHT
    plot_h = _TREND_HEIGHT - _TREND_TOP - _TREND_BOTTOM
    low = min((point.low for point in points), default=0.0)
    high = max((point.high for point in points), default=1.0)
    if high - low < 1e-9:
        low, high = low - 1.0, high + 1.0
    pad = (high - low) * 0.08
    low, high = low - pad, high + pad

    def x(moment: datetime) -> float:
        return _TREND_LEFT + plot_w * (moment - start).total_seconds() / span_s

    def y(value: float) -> float:
        return _TREND_TOP + plot_h * (high - value) / (high - low)

    parts = [_trend_y_axis(low, high, unit, y), _trend_x_axis(start, end, span_s, x)]
    for run in _trend_runs(points, point_s):
        centre = [(x(p.start) + _trend_half(point_s, span_s, plot_w), p) for p in run]
        band = [f"{cx:.1f},{y(p.high):.1f}" for cx, p in centre] + [
            f"{cx:.1f},{y(p.low):.1f}" for cx, p in reversed(centre)
        ]
        parts.append(
            f'<polygon class="band" points="{" ".join(band)}" fill="#0e6e6e" fill-opacity="0.18"/>'
        )
        line = " ".join(f"{cx:.1f},{y(p.mean):.1f}" for cx, p in centre)
        parts.append(
            f'<polyline class="mean" points="{line}" fill="none" stroke="#0e6e6e" '
            'stroke-width="1.6"/>'
        )
        parts.extend(
            f'<circle class="point" cx="{cx:.1f}" cy="{y(p.mean):.1f}" r="1.4" fill="#0e6e6e" '
            f'data-start="{p.start.isoformat()}" data-mean="{p.mean}">'
            f"<title>{escape(_trend_moment(p.start))} UTC: mean {p.mean:.1f} {escape(unit)}, "
            f"min {p.low:.1f}, max {p.high:.1f}</title></circle>"
            for cx, p in centre
        )
    for mark in marks:
        if start <= mark.at < end:
            at = x(mark.at)
            parts.append(
                f'<line class="mark" x1="{at:.1f}" x2="{at:.1f}" y1="{_TREND_TOP}" '
                f'y2="{_TREND_TOP + plot_h}" stroke="#b3261e" stroke-width="1.5" '
                f'stroke-dasharray="4 3" data-at="{mark.at.isoformat()}">'
                f"<title>{escape(mark.label)}</title></line>"
            )
    summary = (
        f"{title} in {unit}, {len(points)} points from {_trend_moment(start)} to "
        f"{_trend_moment(end)} UTC"
        + (f", {len(marks)} marked" if marks else "")
        + "; the table below lists the values."
    )
    return (
        f'<svg class="chart trend" viewBox="0 0 {_TREND_WIDTH} {_TREND_HEIGHT}" width="100%" '
        f'preserveAspectRatio="xMidYMid meet" role="img" aria-label="{escape(summary)}">'
        f"<title>{escape(summary)}</title>{''.join(parts)}</svg>"
    )


def _trend_half(point_s: int, span_s: float, plot_w: float) -> float:
    """Half a point's width in pixels: a point is drawn at the middle of its span."""
    return plot_w * point_s / span_s / 2


def _trend_runs(points: Sequence[TrendPoint], point_s: int) -> list[list[TrendPoint]]:
    runs: list[list[TrendPoint]] = []
    for point in points:
        gap = (point.start - runs[-1][-1].start).total_seconds() if runs else None
        if gap is None or gap > 2 * point_s:
            runs.append([point])
        else:
            runs[-1].append(point)
    return runs


def _trend_y_axis(low: float, high: float, unit: str, y: Callable[[float], float]) -> str:
    parts = [
        f'<line class="axis-line" x1="{_TREND_LEFT}" x2="{_TREND_LEFT}" y1="{_TREND_TOP}" '
        f'y2="{_TREND_HEIGHT - _TREND_BOTTOM}"/>'
    ]
    for step in range(5):
        value = low + (high - low) * step / 4
        at = y(value)
        parts.append(
            f'<line class="grid-line" x1="{_TREND_LEFT}" x2="{_TREND_WIDTH - _TREND_RIGHT}" '
            f'y1="{at:.1f}" y2="{at:.1f}"/>'
            f'<text class="axis end" x="{_TREND_LEFT - 4}" y="{at + 3:.1f}">{value:.1f}</text>'
        )
    parts.append(f'<text class="axis-title" x="4" y="{_TREND_TOP - 4}">{escape(unit)}</text>')
    return "".join(parts)


def _trend_x_axis(
    start: datetime, end: datetime, span_s: float, x: Callable[[datetime], float]
) -> str:
    bottom = _TREND_HEIGHT - _TREND_BOTTOM
    parts = [
        f'<line class="axis-line" x1="{_TREND_LEFT}" x2="{_TREND_WIDTH - _TREND_RIGHT}" '
        f'y1="{bottom}" y2="{bottom}"/>'
    ]
    clock = span_s <= 2 * 86_400
    for step in range(6):
        moment = start + (end - start) * step / 5
        label = f"{moment:%H:%M}" if clock else f"{moment:%d %b}"
        parts.append(f'<text class="axis" x="{x(moment):.1f}" y="{bottom + 13}">{label}</text>')
    parts.append(
        f'<text class="axis-title" x="{_TREND_WIDTH - _TREND_RIGHT}" y="{_TREND_HEIGHT - 3}" '
        f'text-anchor="end">time (UTC)</text>'
    )
    return "".join(parts)


def _trend_moment(moment: datetime) -> str:
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M}"
