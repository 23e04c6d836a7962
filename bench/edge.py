"""Edge agent benchmarks: outbox write rate, publish rate, resident memory.

    python -m bench.edge [--events 50000]

* **Outbox writes**: realistic ``cores.punched`` readings sealed (canonical JSON,
  SHA-256 chain, schema validation) and stored, against a ceiling measured in the
  same run: plain SQLite inserts of the same, already sealed bytes into the same
  table with the same transaction sizes.  Target: ≥ 20,000 events/s on one core.
* **Publish**: a ``DeviceLink`` carrying a full outbox to a local Mosquitto at
  QoS 1 (batches of up to 500, marked sent on PUBACK), against raw paho publishing
  the same batch payloads at QoS 1 with the same in-flight window.  Two cases: a
  backlog read from the file (the outbox reopened, as after a restart), and events
  the same outbox has just recorded, served from its tail in memory (the agent's
  steady state; the bound is raised here so that all 50,000 take that path).
* **Memory**: peak resident set of a real ``coreline agent`` process recording and
  publishing 200 events/s for 10 s, beside a bare interpreter that only imports
  paho.  Target: ≤ 60 MB.
"""

import argparse
import itertools
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from bench.report import chunks, machine, print_table
from edge_agent.device import DeviceReading
from edge_agent.driver import LinkDriver
from edge_agent.outbox import Durability, Outbox, wire_bytes
from edge_agent.publisher import DeviceLink, batch_payload, split_batches
from schemas import MAX_BATCH_BYTES, MAX_BATCH_EVENTS
from tests.support.mosquitto import TemporaryMosquitto
from tests.support.streams import device_stream, punch_data, timestamp
from transport import BrokerAddress

DEVICE: Final = "HP-000001"
_RSS_SECONDS: Final = 10.0


def readings(count: int) -> list[DeviceReading]:
    start = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
    return [
        DeviceReading("cores.punched", start + timedelta(seconds=2 * n), punch_data(n))
        for n in range(1, count + 1)
    ]


def outbox_rate(directory: Path, count: int, per_transaction: int, durability: Durability) -> float:
    outbox = Outbox(directory / f"outbox-{per_transaction}-{durability}.db", durability=durability)
    items = readings(count)
    started = time.perf_counter()
    for chunk in chunks(items, per_transaction):
        outbox.record_many(DEVICE, chunk)
    elapsed = time.perf_counter() - started
    outbox.close()
    return count / elapsed


def ceiling_rate(
    directory: Path, count: int, per_transaction: int, durability: Durability
) -> float:
    """The same bytes and the same table, without sealing or validating anything."""
    path = directory / f"ceiling-{per_transaction}-{durability}.db"
    Outbox(path).close()  # the same schema
    wires = [wire_bytes(event) for event in device_stream(DEVICE, count)]
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA journal_mode = WAL")
    connection.execute(f"PRAGMA synchronous = {durability.value.upper()}")
    now = timestamp(datetime.now(UTC))
    started = time.perf_counter()
    seq = 0
    for chunk in chunks(wires, per_transaction):
        connection.execute("BEGIN IMMEDIATE")
        rows = [(DEVICE, seq + n + 1, wire, now) for n, wire in enumerate(chunk)]
        connection.executemany(
            "INSERT INTO outbox (device_id, seq, wire, recorded_at) VALUES (?, ?, ?, ?)", rows
        )
        seq += len(chunk)
        connection.execute(
            "INSERT OR REPLACE INTO chain_heads (device_id, last_seq, last_hash) VALUES (?, ?, ?)",
            (DEVICE, seq, "0" * 64),
        )
        connection.execute("COMMIT")
    elapsed = time.perf_counter() - started
    connection.close()
    return count / elapsed


def link_publish_rate(
    directory: Path, broker: TemporaryMosquitto, count: int, *, live: bool
) -> tuple[float, float]:
    """Events/s, and this process's CPU µs per event, publishing only (recording is
    not timed).  ``live``: published by the outbox that recorded them, from its tail
    in memory (its bound raised to hold them all, so the whole run takes that path);
    otherwise the outbox is reopened first, as after a restart, and reads the file."""
    path = Path(tempfile.mkdtemp(dir=directory)) / "publish.db"
    outbox = Outbox(path, durability=Durability.NORMAL, tail_bytes=count * 1024 if live else 0)
    for chunk in chunks(readings(count), 1000):
        outbox.record_many(DEVICE, chunk)
    if not live:
        outbox.close()
        outbox = Outbox(path, durability=Durability.NORMAL)
    driver = LinkDriver(outbox)
    link = DeviceLink(DEVICE, outbox, BrokerAddress.parse(broker.url), watcher=driver)
    driver.add(link)
    while not link.connected:
        driver.turn()
    started, cpu = time.perf_counter(), time.process_time()
    # The link knows when it has nothing left to send; the file confirms it.
    while link.sending or outbox.first_unsent_seq(DEVICE) is not None:
        driver.turn(0.001)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    driver.close_links()
    outbox.close()
    return count / elapsed, cpu / count * 1e6


def raw_paho_rate(directory: Path, broker: TemporaryMosquitto, count: int) -> tuple[float, float]:
    """Raw paho at QoS 1, same payloads, same in-flight window, no outbox at all:
    events/s, and this process's CPU µs per event (paho's network thread included)."""
    outbox = Outbox(Path(tempfile.mkdtemp(dir=directory)) / "raw.db", durability=Durability.NORMAL)
    for chunk in chunks(readings(count), 1000):
        outbox.record_many(DEVICE, chunk)
    entries = outbox.unsent(DEVICE, max_events=count)
    payloads = [
        batch_payload(DEVICE, batch)
        for batch in split_batches(entries, MAX_BATCH_EVENTS, MAX_BATCH_BYTES - 128)
    ]
    outbox.close()
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="raw-bench")
    client.max_inflight_messages_set(8)
    acked = threading.Semaphore(0)
    client.on_publish = lambda *_: acked.release()
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    started, cpu = time.perf_counter(), time.process_time()
    for payload in payloads:
        client.publish("coreline/v1/devices/HP-000001/events", payload, qos=1)
    for _ in payloads:
        acked.acquire()
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    client.disconnect()
    client.loop_stop()
    return count / elapsed, cpu / count * 1e6


def peak_rss_mb(
    command: list[str], seconds: float, feed: Callable[[], Iterator[bytes]] | None
) -> float:
    process = subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    assert process.stdin is not None
    peak = 0
    deadline = time.monotonic() + seconds
    lines = feed() if feed else iter(())
    while time.monotonic() < deadline and process.poll() is None:
        for line in itertools.islice(lines, 20):
            process.stdin.write(line)
        process.stdin.flush()
        status = Path(f"/proc/{process.pid}/status").read_text()
        rss_line = next(line for line in status.splitlines() if line.startswith("VmRSS"))
        rss_kb = int(rss_line.split()[1])
        peak = max(peak, rss_kb)
        time.sleep(0.1)
    process.stdin.close()
    process.terminate()
    process.wait(timeout=30)
    return peak / 1024


def firmware_lines() -> Iterator[bytes]:
    for n in itertools.count(1):
        reading = {"type": "cores.punched", "occurred_at": timestamp(datetime.now(UTC)),
                   "data": punch_data(n)}  # fmt: skip
        yield orjson.dumps(reading) + b"\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument(
        "--publish-only", action="store_true", help="only the publish comparison and memory"
    )
    parser.add_argument(
        "--repeat", type=int, default=3, help="publish runs of each kind (medians are shown)"
    )
    arguments = parser.parse_args()
    count = arguments.events
    with tempfile.TemporaryDirectory(prefix="coreline-bench-") as temporary:
        directory = Path(temporary)
        rows = []
        for per_transaction, durability in (
            ()
            if arguments.publish_only
            else ((1, Durability.FULL), (50, Durability.FULL), (500, Durability.NORMAL))
        ):
            sample = count // 20 if per_transaction == 1 else count
            ours = outbox_rate(directory, sample, per_transaction, durability)
            ceiling = ceiling_rate(directory, sample, per_transaction, durability)
            rows.append((f"{per_transaction} / {durability}", f"{ours:,.0f}", f"{ceiling:,.0f}",
                         f"{ours / ceiling:.0%}"))  # fmt: skip
        print_table(
            f"Outbox writes, events/s, one core ({machine()}, load {_load()})",
            ("events per transaction / sync", "outbox", "plain INSERT ceiling", "of ceiling"),
            rows,
        )
        with TemporaryMosquitto() as broker:
            runs = arguments.repeat
            backlog, backlog_cpu = _median(
                lambda: link_publish_rate(directory, broker, count, live=False), runs
            )
            live, live_cpu = _median(
                lambda: link_publish_rate(directory, broker, count, live=True), runs
            )
            raw, raw_cpu = _median(lambda: raw_paho_rate(directory, broker, count), runs)
            print_table(
                f"Publish to a local Mosquitto, QoS 1, events/s (load {_load()})",
                ("DeviceLink (outbox → PUBACK → marked sent)", "events/s",
                 "raw paho, same payloads", "ratio", "CPU µs/event (DeviceLink / raw paho)"),
                [(name, f"{ours:,.0f}", f"{raw:,.0f}", f"{ours / raw:.0%}",
                  f"{ours_cpu:.2f} / {raw_cpu:.2f}")
                 for name, ours, ours_cpu in (
                     ("backlog, read from the file", backlog, backlog_cpu),
                     ("just recorded, from the tail in memory", live, live_cpu))],
            )  # fmt: skip
            agent = [sys.executable, "-m", "services", "agent", "--device-id", DEVICE,
                     "--mqtt-url", broker.url, "--outbox", str(directory / "agent.db"),
                     "--log-level", "warning"]  # fmt: skip
            bare = [sys.executable, "-c", "import paho.mqtt.client, time; time.sleep(60)"]
            env_rss = peak_rss_mb(agent, _RSS_SECONDS, firmware_lines)
            bare_rss = peak_rss_mb(bare, 2.0, None)
            print_table(
                "Agent resident memory, one device, 200 events/s",
                ("coreline agent (peak RSS)", "bare python + paho", "target"),
                [(f"{env_rss:.1f} MB", f"{bare_rss:.1f} MB", "≤ 60 MB")],
            )


def _median(run: Callable[[], tuple[float, float]], times: int) -> tuple[float, float]:
    """The median rate and the median CPU of ``times`` runs: on a shared machine one
    run can lose its core for a while."""
    results = [run() for _ in range(times)]
    return statistics.median(r[0] for r in results), statistics.median(r[1] for r in results)


def _load() -> str:
    """The machine's one-minute load average: other work skews the wall-clock rates."""
    return Path("/proc/loadavg").read_text().split()[0]


if __name__ == "__main__":
    main()
