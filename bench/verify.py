"""coreline-verify over the evidence bundle of a device with a million events.

    python -m bench.verify [--events 1000000] [--keep PATH] [--jobs N]

Builds the bundle first (not timed): one handpiece's stream of sessions and punches,
sealed every 100 events with the device's Ed25519 key, behind its registry stream,
all in one RFC 9162 log whose checkpoint is signed, written event by event through
the platform's writer (``services.evidence``).  With ``--keep PATH`` the bundle is
kept there, and a bundle already there is verified again without being rebuilt.

Then times ``coreline-verify``'s own code over it (every byte, hash, link, seal,
inclusion proof and session) and prints events/s and the CPU time per event of the
worker processes and of the main process (CPU time, because wall-clock time on a
shared machine says as much about the neighbours).  Target: ≥ 100,000 events/s on
two cores.

The baseline, measured in the same run over the same file: SHA-256 of every
event's stored bytes, read line by line in one process, the least any verifier of
the bundle must do; the verifier's CPU per event is printed as a multiple of it.
"""

import argparse
import hashlib
import os
import tempfile
import time
from pathlib import Path
from resource import RUSAGE_CHILDREN, RUSAGE_SELF, getrusage

from coreline_verify import verify_file


def hash_baseline(path: Path) -> tuple[int, float, float]:
    """``(events, seconds, CPU seconds)`` of hashing every event's stored bytes."""
    events = 0
    started, cpu_started = time.perf_counter(), time.process_time()
    with path.open("rb", buffering=1 << 20) as lines:
        for line in lines:
            if line.startswith(b'{"log_index":'):
                hashlib.sha256(line[line.index(b',"event":') + 9 : -2]).digest()
                events += 1
    return events, time.perf_counter() - started, time.process_time() - cpu_started


def _cpu_seconds(who: int) -> float:
    usage = getrusage(who)
    return usage.ru_utime + usage.ru_stime


def _machine() -> str:
    from bench.report import machine  # noqa: PLC0415 - for the reason the builder is: rich

    return machine()


def _load() -> str:
    return " ".join(f"{load:.2f}" for load in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--keep", type=Path, help="write the bundle here and keep it (or reuse it)")
    parser.add_argument("--jobs", type=int, help="worker processes (default: the verifier's)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        path = args.keep or Path(scratch) / "bundle.jsonl"
        if path.exists():
            print(f"reusing {path} ({path.stat().st_size / 1e6:,.0f} MB)")
        else:
            # Imported here: the worker processes the verifier spawns import this
            # module again, and the builder's imports (the platform's writer and
            # models) would add most of a second of CPU to each, not the verifier's.
            from bench.evidence_bundle import build_bundle  # noqa: PLC0415

            started = time.perf_counter()
            build_bundle(path, args.events)
            built = time.perf_counter() - started
            print(f"built {path.stat().st_size / 1e6:,.0f} MB in {built:.0f} s")
        # An auditor verifies a file at rest: let the kernel finish writing this one
        # out first, or its write-back competes with the timed run.
        os.sync()
        sessions = 0

        def count(line: str) -> None:
            nonlocal sessions
            sessions += " session " in line

        print(_machine(), f"load average before {_load()}")
        main_cpu, workers_cpu = _cpu_seconds(RUSAGE_SELF), _cpu_seconds(RUSAGE_CHILDREN)
        started = time.perf_counter()
        verdict = verify_file(path, emit=count, jobs=args.jobs)
        elapsed = time.perf_counter() - started
        main_cpu = _cpu_seconds(RUSAGE_SELF) - main_cpu
        workers_cpu = _cpu_seconds(RUSAGE_CHILDREN) - workers_cpu
        load_after = _load()
        hashed, hash_elapsed, hash_cpu = hash_baseline(path)
    events = verdict.events
    print(
        f"coreline-verify: {events:,} events ({sessions:,} sessions) in {elapsed:.1f} s: "
        f"{events / elapsed:,.0f} events/s (load average after {load_after})"
    )
    per_event = (workers_cpu + main_cpu) / events * 1e6
    print(
        f"  CPU per event: workers {workers_cpu / events * 1e6:.1f} µs, "
        f"main process {main_cpu / events * 1e6:.1f} µs, together {per_event:.1f} µs"
    )
    baseline = hash_cpu / hashed * 1e6
    print(
        f"baseline, SHA-256 of each event's stored bytes in one process: {hashed:,} events "
        f"in {hash_elapsed:.1f} s, {hashed / hash_elapsed:,.0f} events/s, {baseline:.1f} µs "
        f"CPU per event; coreline-verify's CPU per event is {per_event / baseline:.1f}× it"
    )


if __name__ == "__main__":
    main()
