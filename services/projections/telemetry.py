"""Telemetry rollups: heartbeat samples folded into per-device time buckets.

Pure: no I/O, no clock.  A bucket keeps, for each metric (battery, temperature,
signal), the count, sum, minimum and maximum of the samples that carried it, so two
buckets of the same span merge exactly (``merge``) and a coarser resolution is the
merge of finer ones (``coarsen``).  The mean is ``sum / count``, computed when read.

Buckets are aligned to the Unix epoch in UTC (a one-hour bucket starts on the hour),
and a sample falls in the bucket whose span ``[start, start + resolution)`` holds its
``sampled_at``, the device's own clock: the chart shows what the handpiece measured
when it measured it.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import IntEnum, StrEnum
from typing import Final

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


class Metric(StrEnum):
    """What a heartbeat measures, named as the API and the charts name it."""

    BATTERY = "battery"
    TEMPERATURE = "temperature"
    SIGNAL = "signal"

    @property
    def unit(self) -> str:
        return _UNITS[self]

    @property
    def sample_field(self) -> str:
        """The ``schemas.Heartbeat`` field (and raw ``heartbeats`` column) it comes from."""
        return _FIELDS[self]


_UNITS: Final = {Metric.BATTERY: "%", Metric.TEMPERATURE: "°C", Metric.SIGNAL: "dBm"}
_FIELDS: Final = {
    Metric.BATTERY: "battery_pct",
    Metric.TEMPERATURE: "temperature_c",
    Metric.SIGNAL: "rssi_dbm",
}
METRICS: Final = tuple(Metric)
"""In the order a ``Sample`` carries their values."""


class Resolution(IntEnum):
    """The bucket widths the projector keeps, in seconds."""

    MINUTE = 60
    HOUR = 3600


@dataclass(frozen=True, slots=True)
class Sample:
    """One heartbeat, as the fold reads it: ``values`` in ``METRICS`` order, ``None``
    where the heartbeat left a metric out."""

    sampled_at: datetime
    values: tuple[float | None, float | None, float | None]


@dataclass(frozen=True, slots=True)
class Stat:
    """One metric over one bucket."""

    count: int
    total: float
    low: float
    high: float

    @property
    def mean(self) -> float:
        return self.total / self.count

    def merge(self, other: "Stat") -> "Stat":
        return Stat(
            self.count + other.count,
            self.total + other.total,
            min(self.low, other.low),
            max(self.high, other.high),
        )


@dataclass(frozen=True, slots=True)
class Bucket:
    """A device's samples over ``[start, start + resolution)``."""

    device_id: str
    resolution: int
    """Seconds (a ``Resolution``, or a coarser width the API asks ``coarsen`` for)."""
    start: datetime
    samples: int
    stats: tuple[Stat | None, Stat | None, Stat | None]
    """In ``METRICS`` order; ``None``: no sample of the bucket carried that metric."""

    def stat(self, metric: Metric) -> Stat | None:
        return self.stats[METRICS.index(metric)]

    def merge(self, other: "Bucket") -> "Bucket":
        return Bucket(
            self.device_id,
            self.resolution,
            self.start,
            self.samples + other.samples,
            (
                _merged(self.stats[0], other.stats[0]),
                _merged(self.stats[1], other.stats[1]),
                _merged(self.stats[2], other.stats[2]),
            ),
        )


BucketKey = tuple[str, int, datetime]
"""(device id, resolution in seconds, bucket start)."""


def bucket_start(moment: datetime, resolution: int) -> datetime:
    """The start of the ``resolution``-second bucket holding ``moment``."""
    seconds = (moment - _EPOCH) // timedelta(seconds=1)
    return _EPOCH + timedelta(seconds=seconds - seconds % resolution)


def fold(
    buckets: Mapping[BucketKey, Bucket],
    device_id: str,
    samples: Iterable[Sample],
    resolutions: Iterable[int] = tuple(Resolution),
) -> dict[BucketKey, Bucket]:
    """``buckets`` with ``samples`` of ``device_id`` added at every resolution.

    The fold adds: a sample given twice counts twice.  The projector therefore folds
    each bucket it writes from all of its raw samples, never a bucket read back."""
    widths = tuple(resolutions)
    # Accumulators per key: samples, then count, sum, min, max for each metric; a
    # list each, so a sample costs a few float operations rather than new objects.
    sums: dict[BucketKey, list[float]] = {}
    for sample in samples:
        seconds = (sample.sampled_at - _EPOCH) // timedelta(seconds=1)
        for width in widths:
            key = (device_id, width, _EPOCH + timedelta(seconds=seconds - seconds % width))
            tally = sums.get(key)
            if tally is None:
                tally = sums[key] = [0.0, *_EMPTY_TALLY]
            tally[0] += 1
            for index, value in enumerate(sample.values):
                if value is None:
                    continue
                at = 1 + index * 4
                tally[at] += 1
                tally[at + 1] += value
                tally[at + 2] = min(tally[at + 2], value)
                tally[at + 3] = max(tally[at + 3], value)
    folded = dict(buckets)
    for key, tally in sums.items():
        added = Bucket(key[0], key[1], key[2], int(tally[0]), _stats(tally))
        before = folded.get(key)
        folded[key] = added if before is None else before.merge(added)
    return folded


def coarsen(buckets: Iterable[Bucket], resolution: int) -> list[Bucket]:
    """``buckets`` merged into ``resolution``-second buckets (a multiple of theirs),
    in time order per device."""
    merged: dict[BucketKey, Bucket] = {}
    for bucket in buckets:
        start = bucket_start(bucket.start, resolution)
        key = (bucket.device_id, resolution, start)
        wide = Bucket(bucket.device_id, resolution, start, bucket.samples, bucket.stats)
        before = merged.get(key)
        merged[key] = wide if before is None else before.merge(wide)
    return [merged[key] for key in sorted(merged)]


_EMPTY_TALLY: Final = (0.0, 0.0, float("inf"), float("-inf")) * len(METRICS)


def _stats(tally: list[float]) -> tuple[Stat | None, Stat | None, Stat | None]:
    battery, temperature, signal = (
        Stat(int(tally[at]), tally[at + 1], tally[at + 2], tally[at + 3]) if tally[at] else None
        for at in (1, 5, 9)
    )
    return battery, temperature, signal


def _merged(first: Stat | None, second: Stat | None) -> Stat | None:
    if first is None:
        return second
    if second is None:
        return first
    return first.merge(second)


def grown(whole: Bucket, before: Bucket | None, after: Bucket) -> Bucket:
    """``whole`` once one of its parts has grown from ``before`` (``None``: it had no
    samples) to ``after``.

    Raw samples are only ever added, so ``after`` holds every sample ``before`` did:
    counts and sums move by the difference, and the extremes can only widen.  The
    projector keeps an hour this way from the minutes it refolds, instead of refolding
    the whole hour from raw each time one of its minutes gains a sample."""
    old_stats = (None, None, None) if before is None else before.stats
    battery, temperature, signal = (
        _grown_stat(total, old, new)
        for total, old, new in zip(whole.stats, old_stats, after.stats, strict=True)
    )
    return Bucket(
        whole.device_id,
        whole.resolution,
        whole.start,
        whole.samples - (0 if before is None else before.samples) + after.samples,
        (battery, temperature, signal),
    )


def _grown_stat(total: Stat | None, old: Stat | None, new: Stat | None) -> Stat | None:
    if new is None:
        return total
    if total is None:
        return new
    if old is None:
        return total.merge(new)
    return Stat(
        total.count - old.count + new.count,
        total.total - old.total + new.total,
        min(total.low, new.low),
        max(total.high, new.high),
    )
