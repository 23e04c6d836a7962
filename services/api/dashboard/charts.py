"""Charts drawn on the server as SVG: no script library, nothing fetched elsewhere."""

from collections.abc import Sequence
from html import escape

from services.api.models import UsageDay

_WIDTH, _HEIGHT, _BOTTOM, _TOP = 720, 180, 22, 14


def usage_bars(days: Sequence[UsageDay]) -> str:
    """Cores per day as bars, each with a tooltip of the day's sessions and cores."""
    if not days:
        return ""
    peak = max(day.cores for day in days) or 1
    slot = _WIDTH / len(days)
    plot = _HEIGHT - _BOTTOM - _TOP
    bars = []
    for index, day in enumerate(days):
        height = plot * day.cores / peak
        x = index * slot + slot * 0.15
        y = _TOP + plot - height
        title = f"{day.day}: {day.sessions} sessions, {day.cores:,} cores"
        bars.append(
            f'<rect class="bar" x="{x:.1f}" y="{y:.1f}" width="{slot * 0.7:.1f}" '
            f'height="{max(height, 0.5):.1f}"><title>{escape(title)}</title></rect>'
        )
    labels = [
        f'<text x="{index * slot + slot / 2:.1f}" y="{_HEIGHT - 6}" class="axis">'
        f"{escape(day.day[5:])}</text>"
        for index, day in enumerate(days)
        if index % max(1, len(days) // 6) == 0
    ]
    peak_label = f'<text x="2" y="{_TOP - 3}" class="axis start">{peak:,} cores</text>'
    return (
        f'<svg class="chart" viewBox="0 0 {_WIDTH} {_HEIGHT}" role="img" '
        f'aria-label="cores per day">{peak_label}{"".join(bars)}{"".join(labels)}</svg>'
    )
