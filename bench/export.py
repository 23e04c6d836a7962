"""Exporting the evidence bundle of a device with a million events, in constant memory.

    python -m bench.export [--events 1000000] [--database-url URL]

Builds the store first (not timed): one handpiece's stream appended through the
store's own ``append`` in batches of 100, each batch sealed by the device's
registered Ed25519 key, every event logged by the projector's log keeper and a
checkpoint signed.  On SQLite by default (a file in a scratch directory); give
``--database-url`` for a PostgreSQL database at the current schema.

Then times, in the same run:

* **read**: the device's stream read page by page (``read_stream``, 500 a page),
  the floor an export cannot go below, since it reads every event;
* **export**: ``plan_export`` + ``write_export`` of the device's bundle to a file,
  what ``coreline audit export --device`` runs: every event's stored bytes, its
  inclusion proof in the checkpoint's tree, the seals and the key registration.

and prints events/s and CPU per event for each, their ratio, and the process's
resident memory sampled as the bundle grows: flat is constant memory.  The bundle is
then checked with ``coreline-verify`` (not timed).
"""

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path
from typing import Final

from coreline_verify import verify_file

from bench.report import machine
from schemas import SealedEvent
from seal_keys import SealKey
from services.api import commands
from services.eventstore import EventStore, StreamSeal, open_event_store, upgrade_schema
from services.evidence import Scope, plan_export, write_export
from services.merkle_log import MerkleLog, create_key_file, load_verifier
from tests.support.log_keeping import log_and_sign
from tests.support.streams import device_stream

DEVICE: Final = "HP-525252"
ORIGIN: Final = "coreline/log/v1"
BATCH: Final = 100
_PAGE_SIZE: Final = os.sysconf("SC_PAGE_SIZE")


def _resident_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * _PAGE_SIZE / 1e6


def build_store(store: EventStore, url: str, key_path: Path, total: int) -> None:
    """The device's stream, sealed batch by batch, all logged and checkpointed."""
    device_key = SealKey.derived(DEVICE)
    commands.register_device(store, DEVICE, "CX-2", "fleet-ops")
    commands.register_key(store, DEVICE, device_key.public_text, "fleet-ops")
    prev_hash, seq = None, 1
    while seq <= total:
        count = min(BATCH, total - seq + 1)
        batch: list[SealedEvent] = (
            device_stream(DEVICE, count)
            if prev_hash is None
            else device_stream(DEVICE, count, first_seq=seq, prev_hash=prev_hash)
        )
        last = batch[-1]
        made = device_key.seal(DEVICE, last.seq, last.hash)
        store.append(batch, seals=[StreamSeal(DEVICE, last.seq, last.hash, made.key_id, made.sig)])
        prev_hash, seq = last.hash, seq + count
    log_and_sign(store, url, key_path, ORIGIN)


def _read_all(store: EventStore) -> int:
    read, seq = 0, 1
    while page := store.read_stream(DEVICE, seq, None, 500):
        read += len(page)
        seq = page[-1].seq + 1
    return read


class _Sampler:
    """A file that notes the process's resident memory every ``every`` bytes."""

    def __init__(self, path: Path, every: int) -> None:
        self.file = path.open("wb", buffering=1 << 20)
        self.every = every
        self.written = 0
        self.samples: list[tuple[int, float]] = []

    def write(self, data: bytes) -> int:
        before = self.written // self.every
        self.written += len(data)
        if self.written // self.every != before:
            self.samples.append((self.written, _resident_mb()))
        return self.file.write(data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--database-url", help="a PostgreSQL database (default: SQLite)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        url = args.database_url or f"sqlite:///{scratch}/coreline.db"
        upgrade_schema(url)
        key_path = Path(scratch) / "coreline-log.key"
        create_key_file(key_path, ORIGIN)
        store = open_event_store(url)
        try:
            started = time.perf_counter()
            build_store(store, url, key_path, args.events)
            print(f"built the store in {time.perf_counter() - started:.0f} s")

            wall, cpu = time.perf_counter(), time.process_time()
            read = _read_all(store)
            read_s, read_cpu = time.perf_counter() - wall, time.process_time() - cpu

            merkle_log = MerkleLog.open(url)
            bundle = Path(scratch) / "bundle.jsonl"
            sink = _Sampler(bundle, every=max(1, args.events * 1900 // 10))
            baseline_mb = _resident_mb()
            wall, cpu = time.perf_counter(), time.process_time()
            scope = Scope(kind="device", device_id=DEVICE)
            plan = plan_export(store, merkle_log, load_verifier(key_path, ORIGIN), scope)
            summary = write_export(sink, store, merkle_log, plan)  # type: ignore[arg-type]
            sink.file.close()
            export_s, export_cpu = time.perf_counter() - wall, time.process_time() - cpu
            merkle_log.close()
        finally:
            store.close()
        size_mb = bundle.stat().st_size / 1e6
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3
        _report(url, read, (read_s, read_cpu), summary.events, (export_s, export_cpu), size_mb)
        print(f"resident memory before the export {baseline_mb:,.0f} MB; as the bundle grew "
              "(MB written: MB resident): "
              + ", ".join(f"{written / 1e6:,.0f}: {rss:,.0f}" for written, rss in sink.samples)
              + f"; peak {peak_mb:,.0f} MB (the build included)")  # fmt: skip
        verdict = verify_file(bundle)
        assert verdict.events == summary.events, (verdict.events, summary.events)
    print(f"coreline-verify: the bundle verifies ({verdict.events:,} events)")


def _report(
    url: str,
    read: int,
    read_time: tuple[float, float],
    exported: int,
    export_time: tuple[float, float],
    size_mb: float,
) -> None:
    (read_s, read_cpu), (export_s, export_cpu) = read_time, export_time
    print(machine(), f"database {url.split(':', 1)[0]}")
    print(f"read:   {read:,} events in {read_s:.1f} s: {read / read_s:,.0f} events/s, "
          f"{read_cpu / read * 1e6:.1f} µs CPU an event")  # fmt: skip
    print(f"export: {exported:,} events ({size_mb:,.0f} MB) in {export_s:.1f} s: "
          f"{exported / export_s:,.0f} events/s, "
          f"{export_cpu / exported * 1e6:.1f} µs CPU an event; "
          f"{read_s / export_s:.2f}× the read's rate")  # fmt: skip


if __name__ == "__main__":
    main()
