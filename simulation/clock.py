"""Simulated time: a story's moments are integer milliseconds since the run's start,
never the wall clock, and become datetimes and RFC 3339 text only when reported."""

from datetime import UTC, datetime, timedelta
from typing import Final

MS_PER_HOUR: Final = 3_600_000
_MS_PER_DAY: Final = 86_400_000
_UNIX_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_HOURS_TEXT: Final = [f"{hour:02d}:" for hour in range(24)]
_SIXTY_TEXT: Final = [f"{number:02d}" for number in range(60)]
_MILLIS_TEXT: Final = [f"{millis:03d}Z" for millis in range(1000)]


class SimulatedClock:
    """One handpiece's simulated time, counted from ``start``."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("start must be timezone-aware")
        start = start.astimezone(UTC)
        # Event timestamps carry milliseconds; a whole-millisecond epoch keeps each
        # reading's ``occurred_at`` identical to the text hashed in its data.
        self.epoch: Final = start.replace(microsecond=start.microsecond // 1000 * 1000)
        self._epoch_unix_ms = (self.epoch - _UNIX_EPOCH) // timedelta(milliseconds=1)
        self._text_day = -1
        self._text_date = ""

    def moment(self, when: datetime) -> int:
        """The last whole millisecond at or before ``when``."""
        return (when - self.epoch) // timedelta(milliseconds=1)

    def at(self, moment: int) -> datetime:
        return self.epoch + timedelta(milliseconds=moment)

    def text(self, moment: int) -> str:
        """``moment`` as RFC 3339 UTC text with milliseconds, as ``at`` would print."""
        # Formatting a datetime would be most of the cost of a punch report; moments
        # come in time order, so only the date is formatted, once a day, and the time
        # of day is put together from small tables.
        day, within = divmod(self._epoch_unix_ms + moment, _MS_PER_DAY)
        if day != self._text_day:
            self._text_day = day
            self._text_date = f"{datetime.fromtimestamp(day * 86_400, UTC):%Y-%m-%d}T"
        hours, within = divmod(within, MS_PER_HOUR)
        minutes, within = divmod(within, 60_000)
        seconds, millis = divmod(within, 1000)
        return (
            f"{self._text_date}{_HOURS_TEXT[hours]}{_SIXTY_TEXT[minutes]}:"
            f"{_SIXTY_TEXT[seconds]}.{_MILLIS_TEXT[millis]}"
        )
