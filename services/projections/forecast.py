"""Needle-life forecast: how much punching a cartridge has left at the recent pace.

The pace is actuations per minute *of punching*: the sum of actuations over the sum
of punch-window lengths, idle time between windows and sessions left out.  Minutes
left are then minutes of punching, which is what an operator plans a session by
("about 6 minutes of punching left at the current rate").  Only window text from
the events is used, never a clock, so the forecast replays identically.
"""

from collections import deque
from dataclasses import dataclass, field
from datetime import datetime

_fromisoformat = datetime.fromisoformat

RECENT_PUNCHING_S = 600.0
"""How much punching time the pace is measured over: the last ten minutes of windows."""


@dataclass(slots=True)
class PunchRate:
    """The most recent punch windows covering at least ``horizon_s`` of punching."""

    horizon_s: float = RECENT_PUNCHING_S
    windows: deque[tuple[float, int]] = field(default_factory=deque)
    """(window length in seconds, actuations), oldest first."""
    seconds: float = 0.0
    actuations: int = 0

    def add(self, window_start: str, window_end: str, actuations: int) -> None:
        # Bound once at import: this runs for every punch (see ``facts.parse_timestamp``).
        length = (_fromisoformat(window_end) - _fromisoformat(window_start)).total_seconds()
        if length < 0:
            length = 0.0
        windows = self.windows
        windows.append((length, actuations))
        self.seconds += length
        self.actuations += actuations
        # Drop the oldest windows while the rest still cover the horizon, so the pace
        # follows the operator and does not average over the device's whole history.
        while len(windows) > 1 and self.seconds - windows[0][0] >= self.horizon_s:
            old_length, old_actuations = windows.popleft()
            self.seconds -= old_length
            self.actuations -= old_actuations

    def per_minute(self) -> float | None:
        """Actuations per minute of punching; ``None`` before any timed punching."""
        if self.seconds <= 0:
            return None
        return self.actuations * 60 / self.seconds


@dataclass(frozen=True, slots=True)
class NeedleLifeForecast:
    actuations_left: int
    """Before life used reaches 100 % (see ``cartridge.actuations_left``)."""
    actuations_per_minute: float | None
    """The recent punching pace; ``None`` when there is none to go by."""
    minutes_left: float | None
    """Minutes of punching left at that pace; ``None`` without a pace."""

    def message(self) -> str:
        return forecast_message(self)


def forecast_needle_life(
    actuations_left: int, actuations_per_minute: float | None
) -> NeedleLifeForecast:
    minutes_left = None
    if actuations_per_minute is not None and actuations_per_minute > 0:
        minutes_left = actuations_left / actuations_per_minute
    return NeedleLifeForecast(actuations_left, actuations_per_minute, minutes_left)


def forecast_message(forecast: NeedleLifeForecast) -> str:
    """The forecast in words for clinic staff, e.g. "about 6 minutes of punching left
    at the current rate"."""
    if forecast.actuations_left == 0:
        return "needle life used up: replace the cartridge"
    minutes = forecast.minutes_left
    if minutes is None:
        plural = "" if forecast.actuations_left == 1 else "s"
        return f"{forecast.actuations_left} actuation{plural} left; no recent punching to time"
    return f"{_duration_words(minutes)} of punching left at the current rate"


def _duration_words(minutes: float) -> str:
    if minutes < 1:
        return "less than a minute"
    if minutes < 120:
        whole = int(minutes + 0.5)  # half up, as people round; round() would go to even
        return "about 1 minute" if whole == 1 else f"about {whole} minutes"
    return f"about {int(minutes / 60 + 0.5)} hours"
