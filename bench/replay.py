"""Replay: rebuild every read model from a million stored events.

    python -m bench.replay [--events 1000000] [--runs 2] [--profile DIR]

A simulated fleet's events (sessions, punches, wear reports, cartridge swaps,
faults) are sealed into chains and appended to a durable PostgreSQL.  Then
``coreline replay``'s code rebuilds the read models from them, and the baseline,
measured in the same run on the same data, is reading every event with the same
lean read in the same batches, folding nothing: the fastest a replay could go.
Target: ≥ 100,000 events/s on 2 cores.  Beside each rate, the CPU time per event of
this process (every thread) and of the database server: the machine is shared.  The
replay runs ``--runs`` times, alternating with a replay that writes its rows by
``INSERT`` instead of ``COPY`` (the code before ``COPY``), on the same data.  With
``--profile``, the first replay of each kind is recorded by py-spy (``DIR/copy.txt``,
``DIR/insert.txt``: collapsed stacks with thread ids, every thread; py-spy must be
installed beside Python).
"""

import argparse
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import TypeVar

from bench.report import machine, print_table
from edge_agent.sealing import chain_readings
from schemas import GENESIS_HASH, Heartbeat, SealedEvent
from services.eventstore import Cursor, EventStore, open_event_store, upgrade_schema
from services.projector import replay
from simulation import HandpieceSimulator, fleet_device_ids
from tests.support.postgres import TemporaryPostgres

T = TypeVar("T")
START = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
_NAMESPACE = uuid.UUID("0b6c2a4e-6d1f-4c3e-9a7e-2f1f0c9d8e11")


def _event_id(device_id: str, seq: int) -> uuid.UUID:
    return uuid.uuid5(_NAMESPACE, f"{device_id}:{seq}")


def sealed_fleet(total: int, devices: int = 400) -> list[list[SealedEvent]]:
    """About ``total`` events from ``devices`` simulated handpieces, per device."""
    simulators = [HandpieceSimulator(d, 7, START) for d in fleet_device_ids(devices)]
    streams: list[list[SealedEvent]] = [[] for _ in simulators]
    heads = [(0, GENESIS_HASH)] * len(simulators)
    moment, produced = START, 0
    while produced < total:
        moment += timedelta(hours=2)
        for index, simulator in enumerate(simulators):
            seq, prev_hash = heads[index]
            device = simulator.device_id
            sealed = chain_readings(
                device,
                (r for r in simulator.advance(moment) if not isinstance(r, Heartbeat)),
                partial(_event_id, device),
                after_seq=seq,
                after_hash=prev_hash,
            )
            if sealed:
                streams[index].extend(sealed)
                heads[index] = (sealed[-1].seq, sealed[-1].hash)
                produced += len(sealed)
    return streams


def server_cpu(server: TemporaryPostgres) -> float:
    """CPU seconds the PostgreSQL server has used so far (Linux ``/proc``): the
    postmaster, its live backends, and the backends it has reaped (counted in its
    children's times)."""
    postmaster = int((server.data_dir / "postmaster.pid").read_text().split()[0])
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            # The fields after the command's closing parenthesis: ppid is the 2nd,
            # utime, stime, cutime, cstime the 12th to 15th.
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        pid, parent = int(entry.name), int(fields[1])
        if pid == postmaster:
            total += sum(int(value) for value in fields[11:15]) / ticks
        elif parent == postmaster:
            total += sum(int(value) for value in fields[11:13]) / ticks
    return total


def measured(server: TemporaryPostgres, work: Callable[[], T]) -> tuple[T, float, float, float]:
    """``work()``, its wall seconds, this process's CPU seconds (every thread) and the
    database server's CPU seconds."""
    wall, cpu, database = time.perf_counter(), time.process_time(), server_cpu(server)
    result = work()
    return (result, time.perf_counter() - wall, time.process_time() - cpu,
            server_cpu(server) - database)  # fmt: skip


def read_only(store: EventStore) -> int:
    cursor, read = Cursor.START, 0
    while stored := store.read_records(cursor, 20_000):
        cursor, read = stored[-1].cursor, read + len(stored)
    return read


def profiled(output: Path | None, work: Callable[[], T]) -> T:
    """``work()``, recorded by py-spy (200 Hz, idle samples left out) into ``output``
    when one is given."""
    if output is None:
        return work()
    output.parent.mkdir(parents=True, exist_ok=True)
    spy = Path(sys.executable).with_name("py-spy")
    recorder = subprocess.Popen(
        [str(spy), "record", "--pid", str(os.getpid()), "--rate", "200", "--threads",
         "--format", "raw", "--output", str(output), "--nonblocking"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    time.sleep(1.0)  # attached before the work starts
    try:
        return work()
    finally:
        recorder.send_signal(2)  # SIGINT: py-spy writes what it has and exits
        recorder.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=1, help="replays of each kind")
    parser.add_argument("--profile", type=Path, help="py-spy's output directory")
    options = parser.parse_args()
    total = options.events
    started = time.perf_counter()
    streams = sealed_fleet(total)
    count = sum(len(stream) for stream in streams)
    print(f"sealed {count:,} events in {time.perf_counter() - started:.0f} s")
    with TemporaryPostgres(durable=True) as server:
        url = server.create_database("coreline")
        upgrade_schema(url)
        store = open_event_store(url)
        started = time.perf_counter()
        # Appended as a gateway would: each device's events in runs, devices interleaved.
        longest = max(len(stream) for stream in streams)
        for offset in range(0, longest, 50):
            batch = [event for stream in streams for event in stream[offset : offset + 50]]
            for start in range(0, len(batch), 5000):
                store.append(batch[start : start + 5000])
        print(f"appended in {time.perf_counter() - started:.0f} s")

        load = os.getloadavg()[0]
        read, read_wall, read_cpu, read_db = measured(server, lambda: read_only(store))
        baseline = read / read_wall
        rows = []
        for run in range(options.runs):
            for copies in (True, False):
                profile = None
                if options.profile is not None and run == 0:
                    profile = options.profile / ("copy.txt" if copies else "insert.txt")
                result, _, cpu, db = measured(
                    server,
                    partial(profiled, profile, partial(replay, url, store, copy_rows=copies)),
                )
                rows.append((
                    "coreline replay" + ("" if copies else ", rows by INSERT"),
                    f"{result.rate:,.0f}", f"{result.rate / baseline:.0%}",
                    f"{cpu / result.events * 1e6:.1f}", f"{db / result.events * 1e6:.1f}",
                    f"{os.getloadavg()[0]:.1f}",
                ))  # fmt: skip
        store.close()
    rows.append((
        "read only (ceiling)", f"{baseline:,.0f}", "", f"{read_cpu / read * 1e6:.1f}",
        f"{read_db / read * 1e6:.1f}", f"{load:.1f}",
    ))  # fmt: skip
    print_table(
        f"Replay of {result.events:,} events, {result.devices} devices ({machine()}, "
        f"load {load:.1f} at the start)",
        ("", "events/s", "of ceiling", "client CPU µs/event", "server CPU µs/event",
         "load after"),
        rows,
    )  # fmt: skip
    print("target: ≥ 100,000 events/s")


if __name__ == "__main__":
    main()
