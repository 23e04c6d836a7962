"""Fold: the live projector's fold on one core, with no I/O.

    python -m bench.fold [--events 300000] [--batch 5000]

A simulated fleet's events (the same fleet ``bench.replay`` stores) are appended to
the in-memory event store and read back as the live projector reads them, in its
batches of stored events.  Each batch then goes through what ``Projector.step``
does between its read and its commit: the touched devices' snapshots are loaded
(unpickled, as from ``read_devices``), ``Folder.fold`` folds every event with the
alert engine judging each fold, and the device rows with their new snapshots and
the session rows are built.  Only the SQL is left out.  The baseline, in the same
run over the same batches, iterates the records and folds nothing.

Figures are process CPU time per event beside wall-clock throughput: the machine is
shared, and CPU time is what one core would do alone.
Target: ≥ 100,000 events/s on one core (≤ 10 µs of CPU an event).
"""

import argparse
import os
import pickle
import time
from collections.abc import Callable, Iterable, Sequence

from bench.replay import sealed_fleet
from bench.report import machine, print_table
from services.alerts import store as alert_store
from services.alerts.engine import AlertEngine, Key
from services.eventstore import Cursor, InMemoryEventStore, StoredEvent
from services.projections.device import DeviceProjection
from services.projections.read_store import SNAPSHOT_FORMAT, RegistryEntry
from services.projector.folder import Folder


def stored_batches(total: int, batch_size: int) -> list[list[StoredEvent]]:
    """About ``total`` events in the global order, in the projector's batches."""
    streams = sealed_fleet(total)
    store = InMemoryEventStore()
    longest = max(len(stream) for stream in streams)
    for offset in range(0, longest, 50):  # devices interleaved, as a gateway appends
        store.append([event for stream in streams for event in stream[offset : offset + 50]])
    batches, cursor = [], Cursor.START
    while batch := store.read(cursor, batch_size):
        batches.append(batch)
        cursor = batch[-1].cursor
    return batches


class LiveFold:
    """``Projector.step`` between read and commit, its read models in memory: the
    folds kept from batch to batch (``kept``, as the projector does while its
    checkpoint is its own) or loaded from their snapshots every batch."""

    def __init__(self, *, kept: bool) -> None:
        self.snapshots: dict[str, bytes] = {}
        self.book: dict[str, dict[Key, str]] = {}
        self.policies = alert_store.PolicyLookup({})
        self.kept = Folder(self._projections, _no_registry) if kept else None

    def step(self, stored: Sequence[StoredEvent]) -> int:
        devices = {event.device_id for event in stored}
        engine = AlertEngine(
            {device_id: dict(self.book.get(device_id, {})) for device_id in devices},
            self.policies,
        )
        folder = self.kept or Folder(self._projections, _no_registry)
        folder.engine = engine
        update = folder.fold(stored)
        for row in update.devices:
            self.snapshots[row["device_id"]] = row["snapshot"]
        for (device_id, rule, subject), alert_id in engine.decisions.added.items():
            self.book.setdefault(device_id, {})[(rule, subject)] = alert_id
        for device_id, rule, subject in engine.decisions.removed:
            self.book.get(device_id, {}).pop((rule, subject), None)
        return len(update.devices) + len(update.sessions)

    def _projections(self, device_ids: Iterable[str]) -> dict[str, DeviceProjection]:
        found = {}
        for device_id in device_ids:
            saved = self.snapshots.get(device_id)
            if saved is not None:
                version, projection = pickle.loads(saved)  # noqa: S301 - our own rows
                if version == SNAPSHOT_FORMAT:
                    found[device_id] = projection
        return found


def _no_registry(_device_ids: Iterable[str]) -> dict[str, RegistryEntry]:
    return {}


def _timed(work: Callable[[], None]) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of calling ``work``."""
    wall, cpu = time.perf_counter(), time.process_time()
    work()
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--batch", type=int, default=5000)
    arguments = parser.parse_args()
    started = time.perf_counter()
    batches = stored_batches(arguments.events, arguments.batch)
    count = sum(len(batch) for batch in batches)
    print(f"{count:,} events in {len(batches)} batches in {time.perf_counter() - started:.0f} s")

    def iterate() -> None:
        for batch in batches:
            for event in batch:
                _ = event.body

    def fold(kept: bool) -> None:
        live = LiveFold(kept=kept)
        for batch in batches:
            live.step(batch)

    load = os.getloadavg()[0]
    base_wall, base_cpu = _timed(iterate)
    kept_wall, kept_cpu = _timed(lambda: fold(kept=True))
    cold_wall, cold_cpu = _timed(lambda: fold(kept=False))
    print_table(
        f"Live projector fold of {count:,} events, no I/O ({machine()}, load {load:.2f})",
        ("", "events/s (wall)", "CPU µs/event", "events/s per core (CPU)"),
        [
            (
                "baseline: iterate the records",
                f"{count / base_wall:,.0f}",
                f"{base_cpu / count * 1e6:.2f}",
                f"{count / base_cpu:,.0f}",
            ),
            *(
                (
                    f"fold + alert engine + rows, {name}",
                    f"{count / wall:,.0f}",
                    f"{cpu / count * 1e6:.2f}",
                    f"{count / cpu:,.0f}",
                )
                for name, wall, cpu in (
                    ("folds kept", kept_wall, kept_cpu),
                    ("snapshots loaded per batch", cold_wall, cold_cpu),
                )
            ),
        ],
    )
    print("target: ≥ 100,000 events/s on one core (≤ 10 µs of CPU an event)")


if __name__ == "__main__":
    main()
