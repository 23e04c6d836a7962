"""Transparency-log maintenance against the store's append rate, in one run.

    python -m bench.transparency_log [--events 40000]

On PostgreSQL (durable settings) and on SQLite, with the append benchmark's fleet
events (``bench.append.fleet_events``, batches of 500):

* **append**: ``EventStore.append`` alone, the coreline contender of ``bench.append``;
* **log**: ``LogKeeper`` logging those stored events from scratch (leaves, nodes and
  its place, one transaction per batch of 10,000): leaves/s;
* **both at once**: appends at full speed while the keeper follows in a process of
  its own (as the projector's keeper does beside the gateway); the lag (events
  stored but not yet logged) is sampled every 50 ms, and its maximum, and how long
  the log needs to catch up after the last append, are reported.  The log keeps
  pace when its rate exceeds the append rate and the lag stays bounded (it does not
  grow with the run's length).
"""

import argparse
import gc
import multiprocessing
import multiprocessing.synchronize
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bench.append import fleet_events
from bench.report import chunks, machine, print_table
from schemas import SealedEvent
from services.eventstore import open_event_store, upgrade_schema
from services.merkle_log import LogKeeper, MerkleLog
from tests.support.postgres import TemporaryPostgres

BATCH = 500


@dataclass(frozen=True)
class Result:
    database: str
    append_rate: float
    log_rate: float
    concurrent_append_rate: float
    max_lag: int
    catch_up_s: float


def _append_all(url: str, events: Sequence[SealedEvent]) -> float:
    store = open_event_store(url)
    received = datetime.now(UTC)
    started = time.perf_counter()
    for batch in chunks(events, BATCH):
        store.append(batch, received_at=received)
    seconds = time.perf_counter() - started
    store.close()
    return len(events) / seconds


def _log_all(url: str) -> float:
    store, merkle_log = open_event_store(url), MerkleLog.open(url)
    started = time.perf_counter()
    logged = LogKeeper(store, merkle_log, None).catch_up()
    seconds = time.perf_counter() - started
    store.close()
    merkle_log.close()
    return logged / seconds


def _keep(
    url: str, ready: "multiprocessing.synchronize.Event", stop: "multiprocessing.synchronize.Event"
) -> None:
    """The keeper in a process of its own, as beside a gateway in production."""
    store, merkle_log = open_event_store(url), MerkleLog.open(url)
    keeper = LogKeeper(store, merkle_log, None)
    keeper.run_once(idle_wait_s=0)
    ready.set()
    while not stop.is_set():
        keeper.run_once(idle_wait_s=0.05)
    store.close()
    merkle_log.close()


def _both(url: str, events: Sequence[SealedEvent]) -> tuple[float, int, float]:
    store, merkle_log = open_event_store(url), MerkleLog.open(url)
    context = multiprocessing.get_context("spawn")
    ready, stop = context.Event(), context.Event()
    keeper = context.Process(target=_keep, args=(url, ready, stop))
    keeper.start()
    ready.wait()
    appended, lags = [0], [0]
    sampling = threading.Event()

    def sample() -> None:
        sampler_log = MerkleLog.open(url)
        while not sampling.is_set():
            lags.append(appended[0] - sampler_log.size())
            time.sleep(0.05)
        sampler_log.close()

    sampler = threading.Thread(target=sample)
    sampler.start()
    received = datetime.now(UTC)
    started = time.perf_counter()
    for batch in chunks(events, BATCH):
        store.append(batch, received_at=received)
        appended[0] += len(batch)
    append_seconds = time.perf_counter() - started
    finished = time.perf_counter()
    while merkle_log.size() < len(events):
        time.sleep(0.01)
    catch_up = time.perf_counter() - finished
    sampling.set()
    stop.set()
    sampler.join()
    keeper.join()
    store.close()
    merkle_log.close()
    return len(events) / append_seconds, max(lags), catch_up


def measure(database: str, fresh_url: "list[str]", events: Sequence[SealedEvent]) -> Result:
    first, second = fresh_url
    append_rate = _append_all(first, events)
    log_rate = _log_all(first)
    concurrent, max_lag, catch_up = _both(second, events)
    return Result(database, append_rate, log_rate, concurrent, max_lag, catch_up)


def run(total: int) -> list[Result]:
    events = fleet_events(total)
    # The fleet's events stay in memory for the whole run: kept out of the collector's
    # passes, they do not slow whatever runs in this process (the keeper, above all).
    gc.freeze()
    results = []
    with TemporaryPostgres(durable=True) as server:
        urls = [server.create_database(f"bench_log_{n}") for n in range(2)]
        for url in urls:
            upgrade_schema(url)
        results.append(measure("PostgreSQL", urls, events))
    with tempfile.TemporaryDirectory() as directory:
        urls = [f"sqlite:///{Path(directory) / f'log_{n}.db'}" for n in range(2)]
        for url in urls:
            upgrade_schema(url)
        results.append(measure("SQLite", urls, events))
    return results


def report(results: Sequence[Result], total: int) -> None:
    rows = [
        (
            result.database,
            f"{result.append_rate:,.0f}",
            f"{result.log_rate:,.0f}",
            f"{result.log_rate / result.append_rate:.1f}x",
            f"{result.concurrent_append_rate:,.0f}",
            f"{result.max_lag:,}",
            f"{result.catch_up_s * 1000:,.0f} ms",
        )
        for result in results
    ]
    print_table(
        f"Transparency log vs append, {total:,} events ({machine()})",
        ("database", "append ev/s", "log leaves/s", "log/append", "append ev/s (both)",
         "max lag (events)", "catch-up after last append"),
        rows,
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=40_000, help="events appended")
    arguments = parser.parse_args()
    report(run(arguments.events), arguments.events)


if __name__ == "__main__":
    main()
