"""Telemetry rollups: the pure fold, and the projector's tick over SQLite.

    python -m bench.telemetry [--devices 24] [--hours 24] [--every-s 60]

A fleet's heartbeats (one per device every ``--every-s`` seconds of device time)
are generated, then:

* ``fold``: ``services.projections.telemetry.fold`` over all samples at both stored
  resolutions, no I/O;
* ``tick (bulk)``: the samples stored in one go, then one ``TelemetryRollups.tick``
  (read, fold and upsert the hours that gained samples) on a SQLite file;
* ``tick (live)``: the same samples stored a minute of device time at a time, a
  tick after each, as the live projector meets them (every hour it touches is
  refolded from raw each time it gains a sample);
* baseline: ``record_heartbeats`` storing the same samples (what the gateway spends
  on them).

Figures are process CPU time per heartbeat beside wall-clock time: the machine is
shared, and CPU time is what one core would do alone.
"""

import argparse
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

from bench.report import machine, print_table
from schemas import Heartbeat
from services.eventstore import open_event_store, upgrade_schema
from services.projections.read_store import ReadModelStore
from services.projections.telemetry import Sample, fold
from services.projections.telemetry_store import TelemetryRollups


def heartbeats(devices: int, hours: int, every_s: int, end: datetime) -> list[Heartbeat]:
    start = end - timedelta(hours=hours)
    steps = hours * 3600 // every_s
    return [
        Heartbeat.model_construct(
            device_id=f"HP-{device:06d}",
            sampled_at=start + timedelta(seconds=step * every_s),
            battery_pct=50.0 + step % 50,
            temperature_c=25.0 + step % 9,
            uptime_s=step,
            rssi_dbm=-60.0 - step % 30,
        )
        for step in range(steps)
        for device in range(devices)
    ]


def _measured(run: Callable[[], object]) -> tuple[float, float]:
    cpu, wall = time.process_time(), time.perf_counter()
    run()
    return time.process_time() - cpu, time.perf_counter() - wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--devices", type=int, default=24)
    parser.add_argument("--hours", type=int, default=24)
    parser.add_argument("--every-s", type=int, default=60)
    args = parser.parse_args()
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    beats = heartbeats(args.devices, args.hours, args.every_s, now)
    count = len(beats)
    rows: list[list[str]] = []

    def row(name: str, cpu: float, wall: float) -> None:
        rows.append([name, f"{count:,}", f"{cpu * 1e6 / count:.1f}", f"{count / wall:,.0f}"])

    by_device: dict[str, list[Sample]] = {}
    for beat in beats:
        by_device.setdefault(beat.device_id, []).append(
            Sample(beat.sampled_at, (beat.battery_pct, beat.temperature_c, beat.rssi_dbm))
        )

    def fold_all() -> None:
        for device_id, samples in by_device.items():
            fold({}, device_id, samples)

    row("fold (pure, 1 min + 1 h)", *_measured(fold_all))
    with tempfile.TemporaryDirectory() as scratch:
        for mode in ("bulk", "live"):
            url = f"sqlite:///{Path(scratch) / f'{mode}.db'}"
            upgrade_schema(url)
            store = open_event_store(url)
            read_models = ReadModelStore(url)
            rollups = TelemetryRollups(read_models.engine, read_models.backend)
            if mode == "bulk":
                row(
                    "baseline: record_heartbeats",
                    *_measured(partial(store.record_heartbeats, beats)),
                )
                row("tick (bulk)", *_measured(partial(rollups.tick, now, force=True)))
            else:
                per_minute = max(1, args.devices * 60 // args.every_s)

                cpu = wall = 0.0
                for first in range(0, count, per_minute):
                    batch = beats[first : first + per_minute]
                    # Received as sampled: each look's overlap then holds what a
                    # live projector's would (the last 30 s), not the whole run.
                    store.record_heartbeats(batch, received_at=batch[-1].sampled_at)
                    spent = _measured(partial(rollups.tick, now, force=True))
                    cpu, wall = cpu + spent[0], wall + spent[1]
                row("tick (live, each minute)", cpu, wall)
            store.close()
            read_models.close()
    print(machine())
    print_table(
        "Telemetry rollups", ["step", "heartbeats", "CPU µs/heartbeat", "heartbeats/s (wall)"], rows
    )


if __name__ == "__main__":
    main()
