"""The telemetry fold (``services.projections.telemetry``): heartbeats into buckets."""

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from services.projections.telemetry import (
    Metric,
    Resolution,
    Sample,
    bucket_start,
    coarsen,
    fold,
    grown,
)

_START = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)

_values = st.one_of(st.none(), st.floats(min_value=-120, max_value=150, allow_nan=False))
_samples = st.lists(
    st.builds(
        lambda offset, battery, temperature, signal: Sample(
            _START + timedelta(seconds=offset), (battery, temperature, signal)
        ),
        st.integers(min_value=0, max_value=4 * 3600),
        _values,
        _values,
        _values,
    ),
    max_size=60,
)


def test_a_bucket_holds_min_max_mean_and_count_per_metric() -> None:
    """Three samples in one minute: their min, max and mean; a metric left out is not counted."""
    samples = [
        Sample(_START + timedelta(seconds=5), (80.0, 30.0, -60.0)),
        Sample(_START + timedelta(seconds=25), (79.0, 32.0, None)),
        Sample(_START + timedelta(seconds=59), (78.0, 34.5, -70.0)),
        Sample(_START + timedelta(seconds=60), (77.0, 35.0, -65.0)),
    ]
    buckets = fold({}, "HP-000001", samples, [Resolution.MINUTE])
    first = buckets["HP-000001", 60, _START]
    assert first.samples == 3
    temperature = first.stat(Metric.TEMPERATURE)
    assert temperature is not None
    assert (temperature.count, temperature.low, temperature.high) == (3, 30.0, 34.5)
    assert temperature.mean == (30.0 + 32.0 + 34.5) / 3
    signal = first.stat(Metric.SIGNAL)
    assert signal is not None
    assert (signal.count, signal.mean) == (2, -65.0)
    assert buckets["HP-000001", 60, _START + timedelta(minutes=1)].samples == 1


def test_buckets_align_to_the_hour_in_utc() -> None:
    """A one-hour bucket starts on the hour, whatever the sample's zone was."""
    moment = datetime(2026, 11, 24, 10, 59, 59, 999000, tzinfo=UTC)
    assert bucket_start(moment, 3600) == datetime(2026, 11, 24, 10, tzinfo=UTC)
    assert bucket_start(moment, 60) == datetime(2026, 11, 24, 10, 59, tzinfo=UTC)


@given(_samples, st.integers(min_value=0, max_value=60))
def test_folding_in_parts_equals_folding_at_once(samples: list[Sample], cut: int) -> None:
    """Folding the samples in two batches gives the buckets of folding them together."""
    whole = fold({}, "HP-000001", samples)
    parts = fold(fold({}, "HP-000001", samples[:cut]), "HP-000001", samples[cut:])
    assert parts.keys() == whole.keys()
    for key, bucket in whole.items():
        assert parts[key].samples == bucket.samples
        for left, right in zip(parts[key].stats, bucket.stats, strict=True):
            assert (left is None) == (right is None)
            if left is not None and right is not None:
                assert (left.count, left.low, left.high) == (right.count, right.low, right.high)
                assert abs(left.total - right.total) < 1e-6


@given(_samples)
def test_hours_are_the_minutes_merged(samples: list[Sample]) -> None:
    """Coarsening the minute buckets to hours gives the hour buckets the fold made."""
    folded = fold({}, "HP-000001", samples)
    minutes = [bucket for key, bucket in folded.items() if key[1] == Resolution.MINUTE]
    hours = {(b.device_id, b.resolution, b.start): b for b in coarsen(minutes, 3600)}
    expected = {key: bucket for key, bucket in folded.items() if key[1] == Resolution.HOUR}
    assert hours.keys() == expected.keys()
    for key, bucket in expected.items():
        assert hours[key].samples == bucket.samples
        for left, right in zip(hours[key].stats, bucket.stats, strict=True):
            assert (left is None) == (right is None)
            if left is not None and right is not None:
                assert (left.count, left.low, left.high) == (right.count, right.low, right.high)


@given(_samples)
def test_every_sample_is_counted_once(samples: list[Sample]) -> None:
    """Each resolution's bucket sample counts add up to the samples folded."""
    folded = fold({}, "HP-000001", samples)
    for resolution in Resolution:
        counted = sum(b.samples for k, b in folded.items() if k[1] == resolution)
        assert counted == len(samples)


@given(_samples, _samples, st.integers(min_value=0, max_value=60))
def test_an_hour_grown_by_a_minute_equals_the_hour_refolded(
    others: list[Sample], minute: list[Sample], cut: int
) -> None:
    """An hour kept by ``grown`` as one of its minutes gains samples equals the hour
    folded from all of its samples."""
    hour = datetime(2026, 11, 24, 9, tzinfo=UTC)
    inside = [Sample(hour + timedelta(seconds=s.sampled_at.second), s.values) for s in minute]
    rest = [
        Sample(hour + timedelta(minutes=1 + s.sampled_at.minute % 59), s.values) for s in others
    ]
    key_hour, key_minute = ("HP-000001", 3600, hour), ("HP-000001", 60, hour)
    seen = fold({}, "HP-000001", rest + inside[:cut])
    before = seen.get(key_minute)
    after = fold({}, "HP-000001", inside, [60]).get(key_minute)
    whole = seen.get(key_hour)
    if after is None or whole is None:
        return
    kept = grown(whole, before, after)
    expected = fold({}, "HP-000001", rest + inside, [3600])[key_hour]
    assert kept.samples == expected.samples
    for left, right in zip(kept.stats, expected.stats, strict=True):
        assert (left is None) == (right is None)
        if left is not None and right is not None:
            assert (left.count, left.low, left.high) == (right.count, right.low, right.high)
            assert abs(left.total - right.total) < 1e-6
