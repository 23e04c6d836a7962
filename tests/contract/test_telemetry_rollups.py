"""Telemetry rollups (``services.projections.telemetry_store``) on every database: what
the projector's tick writes equals a recomputation from the raw heartbeats, a replay
rebuilds the same, and old buckets are pruned."""

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, text

from schemas import Heartbeat
from services.eventstore import EventStore
from services.projections import telemetry_store
from services.projections.read_store import ReadModelStore
from services.projections.telemetry import Resolution, Sample, fold
from services.projections.telemetry_store import (
    TELEMETRY,
    TelemetryRollups,
    bucket_row,
    rebuild_rollups,
)
from services.projector.replay import replay

_NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture
def read_models(store_url: str) -> Iterator[ReadModelStore]:
    """The read-model side of the store's database, as the projector opens it."""
    opened = ReadModelStore(store_url)
    yield opened
    opened.close()


def _beat(device_id: str, at: datetime, n: int) -> Heartbeat:
    return Heartbeat.model_construct(
        device_id=device_id,
        sampled_at=at,
        battery_pct=100.0 - n % 50,
        temperature_c=25.0 + (n % 13) / 2,
        uptime_s=None,
        rssi_dbm=None if n % 5 == 0 else -60.0 - n % 20,
    )


def _beats(device_id: str, start: datetime, count: int, every_s: int = 20) -> list[Heartbeat]:
    return [_beat(device_id, start + timedelta(seconds=i * every_s), i) for i in range(count)]


def _rows(read_models: ReadModelStore) -> dict[tuple[Any, ...], dict[str, Any]]:
    with read_models.engine.connect() as connection:
        rows = connection.execute(select(TELEMETRY)).mappings().all()
    found = {}
    for row in rows:
        start = row["bucket_start"]
        start = start if start.tzinfo else start.replace(tzinfo=UTC)
        found[row["device_id"], row["resolution_s"], start] = {**row, "bucket_start": start}
    return found


def _recomputed(beats: list[Heartbeat], now: datetime) -> dict[tuple[Any, ...], dict[str, Any]]:
    """The buckets folded straight from the samples, within retention."""
    expected = {}
    for device_id in {beat.device_id for beat in beats}:
        samples = [
            Sample(b.sampled_at, (b.battery_pct, b.temperature_c, b.rssi_dbm))
            for b in beats
            if b.device_id == device_id
        ]
        for key, bucket in fold({}, device_id, samples).items():
            if key[1] == Resolution.MINUTE and bucket.start < now - timedelta(days=7):
                continue
            expected[key] = bucket_row(bucket)
    return expected


def _same(
    found: dict[tuple[Any, ...], dict[str, Any]], expected: dict[tuple[Any, ...], dict[str, Any]]
) -> None:
    assert found.keys() == expected.keys()
    for key, row in expected.items():
        for column, value in row.items():
            if isinstance(value, float):
                assert found[key][column] == pytest.approx(value), (key, column)
            else:
                assert found[key][column] == value, (key, column)


def test_the_tick_writes_what_a_recomputation_from_raw_gives(
    store: EventStore, read_models: ReadModelStore
) -> None:
    """Heartbeats of two devices over two hours, folded in three ticks, equal their buckets
    computed from all the raw samples at once."""
    start = _NOW.replace(minute=0, second=0) - timedelta(hours=3)
    beats = _beats("HP-000001", start, 300) + _beats("HP-000002", start + timedelta(minutes=7), 200)
    rollups = TelemetryRollups(read_models.engine, read_models.backend)
    for part in (beats[:120], beats[120:380], beats[380:]):
        store.record_heartbeats(part)
        assert rollups.tick(_NOW, force=True) == len(part)
    assert rollups.tick(_NOW, force=True) == 0  # nothing new: nothing refolded
    _same(_rows(read_models), _recomputed(beats, _NOW))


def test_a_sample_committed_late_is_still_folded(
    store: EventStore, read_models: ReadModelStore
) -> None:
    """A sample stamped before the newest one folded, but committed after it, is found."""
    rollups = TelemetryRollups(read_models.engine, read_models.backend)
    first = _beats("HP-000001", _NOW - timedelta(minutes=30), 10)
    store.record_heartbeats(first, received_at=_NOW)
    rollups.tick(_NOW, force=True)
    late = _beats("HP-000001", _NOW - timedelta(minutes=20), 3)
    store.record_heartbeats(late, received_at=_NOW - timedelta(seconds=5))
    assert rollups.tick(_NOW, force=True) == 3
    _same(_rows(read_models), _recomputed(first + late, _NOW))


def test_replay_rebuilds_what_the_live_ticks_wrote(
    store: EventStore, read_models: ReadModelStore, store_url: str
) -> None:
    """``rebuild_rollups`` (run by ``coreline replay``) writes the rows the live ticks
    wrote, after the table was emptied or damaged."""
    start = _NOW - timedelta(days=2, hours=5)
    beats = _beats("HP-000001", start, 500, every_s=600) + _beats(
        "HP-000003", _NOW - timedelta(hours=2), 90
    )
    rollups = TelemetryRollups(read_models.engine, read_models.backend)
    store.record_heartbeats(beats[:250])
    rollups.tick(_NOW, force=True)
    store.record_heartbeats(beats[250:])
    rollups.tick(_NOW, force=True)
    live = _rows(read_models)
    with read_models.engine.begin() as connection:
        connection.execute(TELEMETRY.update().values(samples=0))
    assert rebuild_rollups(read_models.engine, read_models.backend, _NOW) == len(beats)
    _same(_rows(read_models), live)
    _same(live, _recomputed(beats, _NOW))
    with read_models.engine.begin() as connection:
        connection.execute(TELEMETRY.delete())
    replay(store_url, store)  # ``coreline replay``
    _same(_rows(read_models), live)


def test_pruning_keeps_minutes_a_week_and_hours_400_days(
    store: EventStore, read_models: ReadModelStore
) -> None:
    """The tick's pruning step deletes minute buckets older than 7 days and hour buckets
    older than 400 days, and keeps everything younger."""
    rollups = TelemetryRollups(read_models.engine, read_models.backend)
    old = [
        {**bucket_row(bucket), "bucket_start": bucket.start}
        for age in (timedelta(days=8), timedelta(days=6), timedelta(days=401), timedelta(days=399))
        for bucket in fold({}, "HP-000001", [Sample(_NOW - age, (50.0, 30.0, -70.0))]).values()
    ]
    with read_models.engine.begin() as connection:
        for row in old:
            connection.execute(TELEMETRY.insert().values(**row))
    store.record_heartbeats(_beats("HP-000001", _NOW - timedelta(minutes=5), 3))
    rollups.tick(_NOW, force=True)
    kept = _rows(read_models)
    ages = {(resolution, (_NOW - start).days) for (_device, resolution, start) in kept}
    assert (60, 8) not in ages
    assert (3600, 401) not in ages
    assert {(60, 6), (3600, 8), (3600, 6), (3600, 399), (60, 0)} <= ages


def test_heartbeats_older_than_minute_retention_fold_only_into_hours(
    store: EventStore, read_models: ReadModelStore
) -> None:
    """A late heartbeat from ten days ago adds to its hour, never to a pruned minute."""
    rollups = TelemetryRollups(read_models.engine, read_models.backend)
    store.record_heartbeats(_beats("HP-000001", (_NOW - timedelta(days=10)).replace(minute=0), 4))
    rollups.tick(_NOW, force=True)
    resolutions = {key[1] for key in _rows(read_models)}
    assert resolutions == {3600}
    with read_models.engine.connect() as connection:
        stored = connection.execute(text("SELECT count(*) FROM read_telemetry")).scalar()
    assert stored == 1  # the four samples fall in one hour


def test_a_long_backlog_is_refolded_by_day_with_the_same_result(
    store: EventStore, read_models: ReadModelStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """More samples waiting than a look holds in memory (a projector stopped for long):
    the tick refolds the devices by day from raw, and the buckets equal a recomputation;
    a look after it changes nothing."""
    monkeypatch.setattr(telemetry_store, "_CATCH_UP_ROWS", 50)
    rollups = TelemetryRollups(read_models.engine, read_models.backend)
    first = _beats("HP-000001", _NOW - timedelta(hours=30), 20, every_s=300)
    store.record_heartbeats(first)
    rollups.tick(_NOW, force=True)
    backlog = _beats("HP-000001", _NOW - timedelta(hours=28), 200, every_s=400) + _beats(
        "HP-000002", _NOW - timedelta(days=9), 100, every_s=900
    )
    store.record_heartbeats(backlog)
    assert rollups.tick(_NOW, force=True) == len(backlog)
    _same(_rows(read_models), _recomputed(first + backlog, _NOW))
    rollups.tick(_NOW, force=True)
    _same(_rows(read_models), _recomputed(first + backlog, _NOW))
