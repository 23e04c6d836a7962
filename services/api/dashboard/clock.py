"""Times as the viewer reads them: in the zone they chose (else their clinic's, else
UTC), the zone named on every time, durations in words."""

from datetime import UTC, datetime, timedelta
from typing import Final
from zoneinfo import ZoneInfo

from markupsafe import Markup

from services.alerts.policy import known_zone

ZONE_COOKIE: Final = "coreline_zone"
COMMON_ZONES: Final = (
    "UTC", "Europe/London", "Europe/Berlin", "Europe/Paris", "Europe/Madrid", "Europe/Rome",
    "Europe/Warsaw", "Europe/Athens", "Europe/Istanbul", "Asia/Dubai", "Asia/Kolkata",
    "Asia/Singapore", "Asia/Shanghai", "Asia/Tokyo", "Australia/Sydney", "Pacific/Auckland",
    "America/Sao_Paulo", "America/New_York", "America/Chicago", "America/Denver",
    "America/Los_Angeles", "Pacific/Honolulu",
)  # fmt: skip
"""Offered in the picker; any other IANA name may be typed."""


def chosen_zone(cookie: str | None, clinic_zone: str | None) -> ZoneInfo:
    """The viewer's own choice when it is a zone, else their clinic's, else UTC."""
    for name in (cookie, clinic_zone):
        if name and known_zone(name):
            return ZoneInfo(name)
    return ZoneInfo("UTC")


def local_time(moment: datetime | None, zone: ZoneInfo, received: datetime | None = None) -> Markup:
    """``2026-11-30 14:05 CET`` in a ``<time>`` whose title holds the UTC instant, and
    the platform's receive time where it differs from the device's by a second or more."""
    if moment is None:
        return Markup("—")
    instant = _aware(moment)
    shown = instant.astimezone(zone)
    title = f"{instant.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"
    arrived = None if received is None else _aware(received)
    if arrived is not None and abs(arrived - instant) >= timedelta(seconds=1):
        late = arrived - instant
        title = (
            f"device time {title}; received {arrived.astimezone(zone):%Y-%m-%d %H:%M:%S %Z} "
            f"({duration(late)} {'later' if late > timedelta(0) else 'earlier'})"
        )
    return Markup('<time datetime="{}" title="{}">{}</time>').format(
        instant.isoformat(), title, f"{shown:%Y-%m-%d %H:%M} {shown:%Z}"
    )


def ago(moment: datetime | None, now: datetime | None = None) -> str:
    """``3 min ago``, ``2 h 10 min ago``, ``in 5 min``; ``never`` for no time."""
    if moment is None:
        return "never"
    gap = (now or datetime.now(UTC)) - _aware(moment)
    if abs(gap) < timedelta(seconds=45):
        return "just now"
    return f"{duration(gap)} ago" if gap > timedelta(0) else f"in {duration(-gap)}"


def duration(span: timedelta | None) -> str:
    """``45 s``, ``3 min``, ``2 h 10 min``, ``3 d 4 h``: the two largest units."""
    if span is None:
        return "—"
    seconds = int(abs(span).total_seconds())
    if seconds < 60:
        return f"{seconds} s"
    minutes, _ = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def _aware(moment: datetime) -> datetime:
    """SQLite hands stored times back without their zone; every stored one is UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
