"""Needle-life forecast: how much punching a cartridge has left at the recent pace.

The pace is actuations per minute *of punching*: the sum of actuations over the sum
of punch-window lengths, idle time between windows and sessions left out.  Minutes
left are then minutes of punching, which is what an operator plans a session by
("about 6 minutes of punching left at the current rate").  Only window text from
the events is used, never a clock, so the forecast replays identically.
"""

from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

_fromisoformat = datetime.fromisoformat

_COMPACT_AFTER = 256
"""Dropped windows kept before the arrays are compacted (when half are dropped)."""

RECENT_PUNCHING_S = 600.0
"""How much punching time the pace is measured over: the last ten minutes of windows."""


@dataclass(slots=True, eq=False)
class PunchRate:
    """The most recent punch windows covering at least ``horizon_s`` of punching.

    Windows are kept in two flat arrays, the oldest still counted at ``first``: a
    device's snapshot, pickled for every batch that touches it, then holds its
    hundreds of windows as two byte strings instead of one tuple each."""

    horizon_s: float = RECENT_PUNCHING_S
    lengths: "array[float]" = field(default_factory=lambda: array("d"))
    """Window lengths in seconds, oldest first; those before ``first`` are dropped."""
    counts: "array[int]" = field(default_factory=lambda: array("q"))
    """Actuations of each window, beside ``lengths``."""
    first: int = 0
    seconds: float = 0.0
    actuations: int = 0

    def add(self, window_start: str, window_end: str, actuations: int) -> None:
        # Bound once at import: this runs for every punch (see ``facts.parse_timestamp``).
        length = (_fromisoformat(window_end) - _fromisoformat(window_start)).total_seconds()
        if length < 0:
            length = 0.0
        lengths, counts = self.lengths, self.counts
        lengths.append(length)
        counts.append(actuations)
        # Sums in locals, written back once: the same arithmetic in the same order as
        # on the attributes, without an attribute store per window dropped.
        seconds = self.seconds + length
        total = self.actuations + actuations
        # Drop the oldest windows while the rest still cover the horizon, so the pace
        # follows the operator and does not average over the device's whole history.
        first, newest, horizon = self.first, len(lengths) - 1, self.horizon_s
        while first < newest and seconds - lengths[first] >= horizon:
            seconds -= lengths[first]
            total -= counts[first]
            first += 1
        if first >= _COMPACT_AFTER and 2 * first >= len(lengths):
            del lengths[:first], counts[:first]
            first = 0
        self.seconds, self.actuations, self.first = seconds, total, first

    def counted(self) -> Iterator[tuple[float, int]]:
        """The windows counted, oldest first: (seconds, actuations)."""
        first = self.first
        return zip(self.lengths[first:], self.counts[first:], strict=True)

    def __eq__(self, other: object) -> bool:
        # The same pace whatever was dropped already and not yet compacted away.
        if not isinstance(other, PunchRate):
            return NotImplemented
        return (self.horizon_s, self.seconds, self.actuations, list(self.counted())) == (
            other.horizon_s, other.seconds, other.actuations, list(other.counted())
        )  # fmt: skip

    __hash__ = None  # type: ignore[assignment]  # mutable, as dataclasses make it

    def __setstate__(self, state: tuple[None, dict[str, Any]]) -> None:
        slots = dict(state[1])
        windows = slots.pop("windows", None)
        if windows is not None:  # pickled before the flat form: a deque of pairs
            slots["lengths"] = array("d", [length for length, _ in windows])
            slots["counts"] = array("q", [count for _, count in windows])
            slots["first"] = 0
        for name, value in slots.items():
            setattr(self, name, value)

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
