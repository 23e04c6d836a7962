"""Append throughput of the PostgreSQL event store, against two baselines in one run.

    python -m bench.append [--events 20000]

For realistic ``cores.punched`` batches of 1, 50 and 500 events it measures:

* **coreline**: ``PostgresEventStore.append`` (advisory locks, neighbour lookup,
  duplicate/conflict/chain rules, binary COPY, the indexed ``events`` table);
* **COPY ceiling**: a raw binary ``COPY`` of the same rows into an unindexed table,
  one transaction per batch: the fastest PostgreSQL can take these bytes;
* **eventsourcing**: the ``eventsourcing`` library's ``PostgresApplicationRecorder``
  inserting the same events (stream id, seq, type, body) on the same server.

The server is started with its default, durable settings (fsync on, synchronous
commit), so every batch pays for one real WAL flush, as in production.
"""

import argparse
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

import psycopg
from eventsourcing.persistence import StoredEvent as LibraryEvent
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore

from bench.report import chunks, machine, print_table
from schemas import SealedEvent
from services.eventstore import upgrade_schema
from services.eventstore.postgres import EVENT_COPY_TYPES, PostgresEventStore
from tests.support.postgres import TemporaryPostgres
from tests.support.streams import device_stream

BATCH_SIZES: Final = (1, 50, 500)
EVENTS_PER_DEVICE: Final = 250
_CEILING_TABLE: Final = (
    "CREATE TABLE IF NOT EXISTS ceiling (stream_id text, device_id text, seq int8, "
    "event_id uuid, type text, occurred_at timestamptz, received_at timestamptz, hash text, "
    "prev_hash text, body bytea)"
)
_CEILING_COPY: Final = (
    "COPY ceiling (stream_id, device_id, seq, event_id, type, occurred_at, received_at, "
    "hash, prev_hash, body) FROM STDIN (FORMAT BINARY)"
)

Appender = Callable[[Sequence[SealedEvent]], None]


@dataclass(frozen=True)
class Measurement:
    contender: str
    batch_size: int
    events: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.events / self.seconds


def fleet_events(total: int) -> list[SealedEvent]:
    """``total`` chained events over ``total / EVENTS_PER_DEVICE`` handpieces, interleaved
    in runs of 50 the way a gateway sees them arrive from many devices."""
    devices = max(1, -(-total // EVENTS_PER_DEVICE))
    streams = [device_stream(f"HP-{9_000_000 + n:07d}", EVENTS_PER_DEVICE) for n in range(devices)]
    runs = [stream[start : start + 50] for start in range(0, EVENTS_PER_DEVICE, 50)
            for stream in streams]  # fmt: skip
    return [event for run in runs for event in run][:total]


def timed(
    contender: str, size: int, events: Sequence[SealedEvent], append: Appender
) -> Measurement:
    started = time.perf_counter()
    for batch in chunks(events, size):
        append(batch)
    return Measurement(contender, size, len(events), time.perf_counter() - started)


def coreline_appender(url: str) -> tuple[Appender, Callable[[], None]]:
    upgrade_schema(url)
    store = PostgresEventStore(url)
    received = datetime.now(UTC)

    def append(batch: Sequence[SealedEvent]) -> None:
        result = store.append(batch, received_at=received)
        if result.appended != len(batch):
            raise RuntimeError(f"appended {result.appended} of {len(batch)}: {result}")

    return append, store.close


def ceiling_appender(url: str) -> tuple[Appender, Callable[[], None]]:
    connection = psycopg.connect(url, autocommit=True)
    # Logged like the real table: UNLOGGED would skip the WAL and not be a fair ceiling.
    connection.execute(_CEILING_TABLE)
    received = datetime.now(UTC)

    def append(batch: Sequence[SealedEvent]) -> None:
        with (
            connection.transaction(),
            connection.cursor() as cursor,
            cursor.copy(_CEILING_COPY) as copy,
        ):
            copy.set_types(EVENT_COPY_TYPES)
            for event in batch:
                copy.write_row(
                    (
                        event.stream_id, event.device_id, event.seq, event.event_id,
                        event.type, event.occurred_at, received, event.hash,
                        event.prev_hash, event.body,
                    )
                )  # fmt: skip

    return append, connection.close


def eventsourcing_appender(
    server: TemporaryPostgres, dbname: str
) -> tuple[Appender, Callable[[], None]]:
    datastore = PostgresDatastore(
        dbname=dbname, host="127.0.0.1", port=server.port, user="postgres", password="",
        originator_id_type="text",
    )  # fmt: skip
    recorder = PostgresApplicationRecorder(datastore)
    recorder.create_table()

    def append(batch: Sequence[SealedEvent]) -> None:
        recorder.insert_events(
            [
                LibraryEvent(
                    originator_id=event.stream_id,
                    originator_version=event.seq,
                    topic=event.type,
                    state=event.body,
                )
                for event in batch
            ]
        )

    return append, datastore.close


def run(total: int) -> list[Measurement]:
    events = fleet_events(total)
    measurements: list[Measurement] = []
    with TemporaryPostgres(durable=True) as server:
        for size in BATCH_SIZES:
            # Single-event commits are bounded by fsync: fewer of them keep the run short.
            sample = events if size > 1 else events[: max(1, total // 10)]
            for contender in ("COPY ceiling", "coreline", "eventsourcing"):
                dbname = f"bench_{contender.split()[0].lower()}_{size}"
                url = server.create_database(dbname)
                if contender == "coreline":
                    append, close = coreline_appender(url)
                elif contender == "COPY ceiling":
                    append, close = ceiling_appender(url)
                else:
                    append, close = eventsourcing_appender(server, dbname)
                try:
                    measurements.append(timed(contender, size, sample, append))
                finally:
                    close()
    return measurements


def report(measurements: Sequence[Measurement]) -> None:
    rate = {(m.contender, m.batch_size): m.rate for m in measurements}
    rows = []
    for size in BATCH_SIZES:
        ours = rate["coreline", size]
        rows.append(
            (
                str(size),
                f"{ours:,.0f}",
                f"{rate['COPY ceiling', size]:,.0f}",
                f"{rate['eventsourcing', size]:,.0f}",
                f"{ours / rate['COPY ceiling', size]:.0%}",
                f"{ours / rate['eventsourcing', size]:.2f}x",
            )
        )
    print_table(
        f"Event store append, events/s ({machine()})",
        ("batch", "coreline", "COPY ceiling", "eventsourcing", "of ceiling", "vs eventsourcing"),
        rows,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20_000, help="events per batch size")
    arguments = parser.parse_args()
    report(run(arguments.events))


if __name__ == "__main__":
    main()
