"""Where telemetry rollups live: ``read_telemetry``, fed from the raw ``heartbeats``
table by the projector's tick (``TelemetryRollups``) and rebuilt by ``coreline
replay`` (``rebuild_rollups``); see docs/telemetry.md for the retention policy.

Heartbeats are not events: they carry no seq and no global position, only the
gateway's receive time.  So the projector does not count each sample once into a
running total (a restart or a second reader would count it twice); it finds the
hours that gained samples since it last looked and refolds each of those hours
whole from the raw table, then upserts its buckets.  Writing a bucket is therefore
idempotent, and the live rollups equal a recomputation from raw by construction.

Finding the new samples.  A sample's ``received_at`` is stamped by the gateway just
before its transaction commits, so a sample can become visible a moment after a
later-stamped one.  Each look reaches ``_OVERLAP`` behind the newest receive time
already seen, and the samples seen in that overlap are remembered, so a late commit
is still found without refolding everything in the overlap every time.  A sample
committed more than ``_OVERLAP`` after its stamp would be missed until the next
replay; heartbeats are QoS 0 and their loss is harmless by design.

TimescaleDB: where the extension is installed the same rollups come from two
continuous aggregates over ``heartbeats`` (``ensure_continuous_aggregates``) behind
the view ``read_telemetry_timescale``, and the projector leaves them to it.  This
path has not been exercised: TimescaleDB could not be installed where it was built.
"""

import time
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from sqlalchemy import (
    Column,
    DateTime,
    Engine,
    Float,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    and_,
    bindparam,
    delete,
    inspect,
    or_,
    select,
    text,
)
from sqlalchemy import Connection as SqlConnection
from sqlalchemy.dialects.postgresql import insert as postgres_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from services.eventstore import Backend, Cursor, load_checkpoint, save_checkpoint
from services.projections.telemetry import (
    METRICS,
    Bucket,
    BucketKey,
    Resolution,
    Sample,
    Stat,
    bucket_start,
    fold,
    grown,
)

KEPT: Final = {Resolution.MINUTE: timedelta(days=7), Resolution.HOUR: timedelta(days=400)}
"""How long each resolution is kept, counted back from the platform's clock."""
CHECKPOINT: Final = "telemetry-rollups"
"""Its position is the newest heartbeat receive time folded, in microseconds."""
TIMESCALE_VIEW: Final = "read_telemetry_timescale"
_OVERLAP: Final = timedelta(seconds=30)
_TICK_EVERY_S: Final = 5.0
_PRUNE_EVERY_S: Final = 300.0
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_HOUR: Final = timedelta(hours=1)
_MINUTE: Final = timedelta(minutes=1)
_IN_LIST_LIMIT: Final = 400
_CATCH_UP_ROWS: Final = 100_000
"""More samples than this waiting (a projector stopped for long): refold by day."""
_MOMENT: Final = DateTime(timezone=True)


_METRIC_COLUMNS: Final = tuple(
    tuple(f"{metric.value}_{part}" for part in ("count", "sum", "min", "max")) for metric in METRICS
)


def telemetry_table(name: str = "read_telemetry") -> Table:
    """One row per (device, resolution, bucket): per metric its count, sum, min, max."""
    metric_columns = [
        Column(name, Integer if name.endswith("_count") else Float)
        for names in _METRIC_COLUMNS
        for name in names
    ]
    return Table(
        name,
        MetaData(),
        Column("device_id", Text, primary_key=True),
        Column("resolution_s", Integer, primary_key=True),
        Column("bucket_start", _MOMENT, primary_key=True),
        Column("samples", Integer, nullable=False),
        *metric_columns,
        # Pruning walks one resolution's oldest buckets across every device.
        Index(f"{name}_age", "resolution_s", "bucket_start"),
    )


TELEMETRY: Final = telemetry_table()


def bucket_row(bucket: Bucket) -> dict[str, Any]:
    row: dict[str, Any] = {
        "device_id": bucket.device_id,
        "resolution_s": bucket.resolution,
        "bucket_start": bucket.start,
        "samples": bucket.samples,
    }
    for names, stat in zip(_METRIC_COLUMNS, bucket.stats, strict=True):
        count, total, low, high = names
        row[count] = 0 if stat is None else stat.count
        row[total] = None if stat is None else stat.total
        row[low] = None if stat is None else stat.low
        row[high] = None if stat is None else stat.high
    return row


def row_bucket(row: Any) -> Bucket:
    """A bucket from its ``read_telemetry`` row, selected whole (SQLite hands times
    back without zone).  By position: the columns are ``telemetry_table``'s."""
    battery, temperature, signal = (
        Stat(int(row[at]), float(row[at + 1]), float(row[at + 2]), float(row[at + 3]))
        if row[at]
        else None
        for at in (4, 8, 12)
    )
    start: datetime = row[2]
    if start.tzinfo is None:
        start = start.replace(tzinfo=UTC)
    return Bucket(row[0], int(row[1]), start, int(row[3]), (battery, temperature, signal))


def timescale_present(connection: SqlConnection) -> bool:
    """Whether the database has TimescaleDB installed (never required)."""
    if connection.dialect.name != "postgresql":
        return False
    found = connection.execute(
        text("SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb')")
    ).scalar()
    return bool(found)


class TelemetryRollups:
    """The projector's share of telemetry: on each ``tick``, fold the hours that
    gained heartbeats into ``read_telemetry``, and now and then prune old buckets."""

    def __init__(self, engine: Engine, backend: Backend) -> None:
        self._engine = engine
        self._backend = backend
        TELEMETRY.metadata.create_all(engine)
        with engine.begin() as connection:
            # Read models kept apart from the event store's database see no samples.
            self.raw = inspect(connection).has_table("heartbeats")
            self.timescale = self.raw and timescale_present(connection)
            if self.timescale:
                ensure_continuous_aggregates(connection)
            elif self.raw:
                # Each look reads the samples received lately; without this index that
                # is a scan of every sample kept.  Derived, so made here, once.
                connection.execute(
                    text(
                        "CREATE INDEX IF NOT EXISTS heartbeats_received ON heartbeats (received_at)"
                    )
                )
        self._seen: set[tuple[Any, Any, Any]] = set()
        self._next_tick = 0.0
        self._next_prune = 0.0

    def tick(self, now: datetime, *, force: bool = False) -> int:
        """Fold what arrived since the last look (at most every few seconds unless
        ``force``), and prune when a prune is due; how many new samples it found."""
        moment = time.monotonic()
        if self.timescale or not self.raw or (not force and moment < self._next_tick):
            return 0
        self._next_tick = moment + _TICK_EVERY_S
        found = self._fold_new(now)
        if moment >= self._next_prune:
            self._next_prune = moment + _PRUNE_EVERY_S
            self.prune(now)
        return found

    def _fold_new(self, now: datetime) -> int:
        with self._engine.begin() as connection:
            watermark = _from_micros(load_checkpoint(connection, CHECKPOINT).position)
            waiting = connection.execute(
                text("SELECT count(*) FROM heartbeats WHERE received_at > :since"),
                {"since": self._bound(watermark)},
            ).scalar()
            if waiting and waiting > _CATCH_UP_ROWS:
                return self._catch_up(connection, watermark, now)
            arrived = connection.execute(
                text(
                    "SELECT device_id, sampled_at, received_at FROM heartbeats "
                    "WHERE received_at > :since"
                ),
                {"since": self._bound(watermark - _OVERLAP)},
            ).all()
            fresh = [row for row in arrived if tuple(row) not in self._seen]
            if not fresh:
                return 0
            newest = max(_moment(row[2]) for row in arrived)
            dirty: dict[str, set[datetime]] = {}
            for device_id, sampled_at, _received in fresh:
                dirty.setdefault(device_id, set()).add(bucket_start(_moment(sampled_at), 60))
            upsert(connection, self._backend, _kept(self._refold(connection, dirty, now), now))
            position = max(newest, watermark)
            save_checkpoint(connection, CHECKPOINT, Cursor(0, _micros(position)))
        # Remember only what the next look's overlap can still return.
        horizon = position - _OVERLAP
        self._seen = {tuple(row) for row in arrived if _moment(row[2]) > horizon}
        return len(fresh)

    def _catch_up(self, connection: SqlConnection, watermark: datetime, now: datetime) -> int:
        """After a long stop: every device's buckets from the hour of its oldest sample
        received since ``watermark`` on, refolded whole from raw a day at a time (as a
        replay does), rather than holding every sample received since in memory."""
        rows = connection.execute(
            text(
                "SELECT device_id, min(sampled_at), max(received_at), count(*) FROM heartbeats "
                "WHERE received_at > :since GROUP BY device_id"
            ),
            {"since": self._bound(watermark)},
        ).all()
        for device_id, oldest, _newest, _count in rows:
            since = bucket_start(_moment(oldest), int(Resolution.HOUR))
            _rebuild_device(connection, self._backend, device_id, since, now)
        position = max(_moment(row[2]) for row in rows)
        save_checkpoint(connection, CHECKPOINT, Cursor(0, _micros(position)))
        self._seen = set()  # the overlap is read again next time: whole buckets, same rows
        return sum(int(row[3]) for row in rows)

    def _refold(
        self, connection: SqlConnection, dirty: dict[str, set[datetime]], now: datetime
    ) -> list[Bucket]:
        """The buckets that change when these minutes of these devices gained samples:
        each minute refolded from raw, and its hour grown by the difference
        (``telemetry.grown``); an hour whose minutes are past retention, refolded
        from raw whole."""
        horizon = now - KEPT[Resolution.MINUTE]
        changed: list[Bucket] = []
        refolded: set[tuple[str, datetime]] = set()
        recent: dict[str, set[datetime]] = {}
        for device_id, minutes in dirty.items():
            old_hours = sorted({bucket_start(m, 3600) for m in minutes if m < horizon})
            for first, last in _runs(old_hours, _HOUR):
                samples = raw_samples(connection, self._backend, device_id, first, last + _HOUR)
                changed.extend(fold({}, device_id, samples, [Resolution.HOUR]).values())
            refolded.update((device_id, hour) for hour in old_hours)
            kept = {minute for minute in minutes if minute >= horizon}
            if kept:
                recent[device_id] = kept
        if not recent:
            return changed
        minutes_now = self._minutes_from_raw(connection, recent)
        stored = self._stored(connection, recent)
        hours: dict[BucketKey, Bucket] = {}
        for key in sorted(minutes_now):
            after = minutes_now[key]
            device_id, hour = key[0], bucket_start(key[2], 3600)
            if (device_id, hour) in refolded:
                continue
            hour_key = (device_id, int(Resolution.HOUR), hour)
            whole = hours.get(hour_key, stored.get(hour_key))
            hours[hour_key] = (
                Bucket(device_id, int(Resolution.HOUR), hour, after.samples, after.stats)
                if whole is None
                else grown(whole, stored.get(key), after)
            )
        changed.extend(minutes_now.values())
        changed.extend(hours.values())
        return changed

    def _minutes_from_raw(
        self, connection: SqlConnection, recent: dict[str, set[datetime]]
    ) -> dict[BucketKey, Bucket]:
        """The minute buckets of ``recent`` folded whole from raw: live, one query over
        every device (they all report about now); else a query per run of minutes."""
        every = [minute for minutes in recent.values() for minute in minutes]
        first, last = min(every), max(every) + _MINUTE
        samples: dict[str, list[Sample]] = {device_id: [] for device_id in recent}
        if last - first <= _HOUR:
            rows = connection.execute(
                text(
                    "SELECT device_id, sampled_at, battery_pct, temperature_c, rssi_dbm "
                    "FROM heartbeats WHERE sampled_at >= :start AND sampled_at < :end "
                    "AND device_id IN :devices"
                ).bindparams(bindparam("devices", expanding=True)),
                {
                    "start": self._bound(first), "end": self._bound(last),
                    "devices": sorted(recent),
                },
            )  # fmt: skip
            for device_id, sampled_at, battery, temperature, signal in rows:
                moment = _moment(sampled_at)
                if bucket_start(moment, 60) in recent[device_id]:
                    samples[device_id].append(Sample(moment, (battery, temperature, signal)))
        else:
            for device_id, minutes in recent.items():
                for run_first, run_last in _runs(sorted(minutes), _MINUTE):
                    samples[device_id].extend(
                        raw_samples(
                            connection, self._backend, device_id, run_first, run_last + _MINUTE
                        )
                    )
        folded: dict[BucketKey, Bucket] = {}
        for device_id, found in samples.items():
            folded = fold(folded, device_id, found, [Resolution.MINUTE])
        return folded

    def _stored(
        self, connection: SqlConnection, recent: dict[str, set[datetime]]
    ) -> dict[BucketKey, Bucket]:
        """The stored minute buckets of ``recent`` and the hour buckets holding them."""
        minutes = {minute for found in recent.values() for minute in found}
        hours = {bucket_start(minute, 3600) for minute in minutes}
        table = TELEMETRY.c
        if len(minutes) + len(hours) <= _IN_LIST_LIMIT:
            wanted = or_(
                and_(table.resolution_s == int(Resolution.MINUTE), table.bucket_start.in_(minutes)),
                and_(table.resolution_s == int(Resolution.HOUR), table.bucket_start.in_(hours)),
            )
        else:  # a catch-up: one range, filtered here
            wanted = and_(table.bucket_start >= min(hours), table.bucket_start <= max(minutes))
        rows = connection.execute(
            select(TELEMETRY).where(table.device_id.in_(sorted(recent)), wanted)
        )
        found: dict[BucketKey, Bucket] = {}
        for row in rows:
            bucket = row_bucket(row)
            key = (bucket.device_id, bucket.resolution, bucket.start)
            if bucket.start in (minutes if bucket.resolution == 60 else hours):
                found[key] = bucket
        return found

    def prune(self, now: datetime) -> int:
        """Delete buckets past their resolution's retention; how many went."""
        gone = 0
        with self._engine.begin() as connection:
            for resolution, kept in KEPT.items():
                result = connection.execute(
                    delete(TELEMETRY).where(
                        TELEMETRY.c.resolution_s == int(resolution),
                        TELEMETRY.c.bucket_start < now - kept,
                    )
                )
                gone += result.rowcount
        return gone

    def _bound(self, moment: datetime) -> Any:
        return raw_time(self._backend, moment)


def raw_time(backend: Backend, moment: datetime) -> Any:
    """``moment`` as the raw table compares it: SQLite keeps fixed-width UTC text."""
    if backend is Backend.SQLITE:
        return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return moment


def raw_samples(
    connection: SqlConnection, backend: Backend, device_id: str, start: datetime, end: datetime
) -> Iterator[Sample]:
    """A device's raw heartbeats sampled in ``[start, end)``."""
    rows = connection.execute(
        text(
            "SELECT sampled_at, battery_pct, temperature_c, rssi_dbm FROM heartbeats "
            "WHERE device_id = :device AND sampled_at >= :start AND sampled_at < :end"
        ),
        {"device": device_id, "start": raw_time(backend, start), "end": raw_time(backend, end)},
    )
    for sampled_at, battery, temperature, signal in rows:
        yield Sample(_moment(sampled_at), (battery, temperature, signal))


def upsert(connection: SqlConnection, backend: Backend, buckets: Iterable[Bucket]) -> None:
    """Write ``buckets`` whole, replacing what their keys held."""
    rows = [bucket_row(bucket) for bucket in buckets]
    if not rows:
        return
    insert = (postgres_insert if backend is Backend.POSTGRES else sqlite_insert)(TELEMETRY)
    key = ["device_id", "resolution_s", "bucket_start"]
    statement = insert.on_conflict_do_update(
        index_elements=key,
        set_={
            column.name: insert.excluded[column.name]
            for column in TELEMETRY.columns
            if column.name not in key
        },
    )
    # Chunks keep SQLite under its bound-parameter limit.
    for first in range(0, len(rows), 200):
        connection.execute(statement, rows[first : first + 200])


def rebuild_rollups(engine: Engine, backend: Backend, now: datetime) -> int:
    """Recompute ``read_telemetry`` from the raw heartbeats still kept (``coreline
    replay``); how many samples it folded.

    Buckets older than the oldest raw sample are left alone: raw heartbeats have a
    shorter retention than hourly rollups, so those buckets are all that remains of
    their hours and nothing could rebuild them."""
    TELEMETRY.metadata.create_all(engine)
    with engine.begin() as connection:
        if timescale_present(connection):
            return 0
        oldest, newest = connection.execute(
            text("SELECT min(sampled_at), max(received_at) FROM heartbeats")
        ).one()
        if oldest is None:
            connection.execute(delete(TELEMETRY))
            return 0
        since = bucket_start(_moment(oldest), int(Resolution.HOUR))
        connection.execute(delete(TELEMETRY).where(TELEMETRY.c.bucket_start >= since))
        devices = [
            row[0] for row in connection.execute(text("SELECT DISTINCT device_id FROM heartbeats"))
        ]
        folded = 0
        for device_id in devices:
            folded += _rebuild_device(connection, backend, device_id, since, now)
        save_checkpoint(connection, CHECKPOINT, Cursor(0, _micros(_moment(newest))))
    return folded


def _rebuild_device(
    connection: SqlConnection, backend: Backend, device_id: str, since: datetime, now: datetime
) -> int:
    """One device's buckets from its raw samples, a day at a time so that memory stays
    bounded however long the raw table reaches back."""
    folded, day = 0, since
    last = connection.execute(
        text("SELECT max(sampled_at) FROM heartbeats WHERE device_id = :device"),
        {"device": device_id},
    ).scalar()
    if last is None:
        return 0
    end = _moment(last) + timedelta(seconds=1)
    while day < end:
        samples = list(raw_samples(connection, backend, device_id, day, day + timedelta(days=1)))
        folded += len(samples)
        upsert(connection, backend, _kept(fold({}, device_id, samples).values(), now))
        day += timedelta(days=1)
    return folded


def _kept(buckets: Iterable[Bucket], now: datetime) -> list[Bucket]:
    """Buckets still inside their resolution's retention."""
    return [
        bucket
        for bucket in buckets
        if bucket.start >= now - KEPT.get(Resolution(bucket.resolution), timedelta.max / 2)
    ]


def _runs(starts: Sequence[datetime], step: timedelta) -> Iterator[tuple[datetime, datetime]]:
    """Sorted bucket starts as (first, last) runs of consecutive ``step``-wide buckets."""
    if not starts:
        return
    first = previous = starts[0]
    for hour in starts[1:]:
        if hour - previous > step:
            yield first, previous
            first = hour
        previous = hour
    yield first, previous


def _moment(value: datetime | str) -> datetime:
    if isinstance(value, str):
        return datetime.fromisoformat(value)
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _micros(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(microseconds=1)


def _from_micros(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=micros)


def ensure_continuous_aggregates(connection: SqlConnection) -> None:
    """On TimescaleDB: two continuous aggregates over ``heartbeats`` with refresh and
    retention policies matching ``KEPT``, and one view over both with the columns of
    ``read_telemetry``.  Not exercised (see the module doc)."""
    for resolution, kept in KEPT.items():
        name = f"read_telemetry_{int(resolution)}s"
        aggregates = ", ".join(
            f"count({metric.sample_field}) AS {metric.value}_count, "
            f"sum({metric.sample_field}) AS {metric.value}_sum, "
            f"min({metric.sample_field}) AS {metric.value}_min, "
            f"max({metric.sample_field}) AS {metric.value}_max"
            for metric in METRICS
        )
        connection.execute(
            text(
                f"CREATE MATERIALIZED VIEW IF NOT EXISTS {name} "  # noqa: S608 - names are constants
                "WITH (timescaledb.continuous) AS "
                f"SELECT device_id, {int(resolution)} AS resolution_s, "
                f"time_bucket(interval '{int(resolution)} seconds', sampled_at) AS bucket_start, "
                f"count(*) AS samples, {aggregates} "
                "FROM heartbeats GROUP BY device_id, bucket_start WITH NO DATA"
            )
        )
        lag = "2 minutes" if resolution is Resolution.MINUTE else "2 hours"
        connection.execute(
            text(
                f"SELECT add_continuous_aggregate_policy('{name}', "
                f"start_offset => interval '{kept.days} days', end_offset => interval '{lag}', "
                "schedule_interval => interval '1 minute', if_not_exists => true)"
            )
        )
        connection.execute(
            text(
                f"SELECT add_retention_policy('{name}', interval '{kept.days} days', "
                "if_not_exists => true)"
            )
        )
    columns = ", ".join(column.name for column in TELEMETRY.columns)
    connection.execute(
        text(
            f"CREATE OR REPLACE VIEW {TIMESCALE_VIEW} AS "  # noqa: S608 - names are constants
            + " UNION ALL ".join(
                f"SELECT {columns} FROM read_telemetry_{int(resolution)}s"  # noqa: S608
                for resolution in KEPT
            )
        )
    )
