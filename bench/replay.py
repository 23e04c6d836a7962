"""Replay: rebuild every read model from a million stored events.

    python -m bench.replay [--events 1000000]

A simulated fleet's events (sessions, punches, wear reports, cartridge swaps,
faults) are sealed into chains and appended to a durable PostgreSQL.  Then
``coreline replay``'s code rebuilds the read models from them, and the baseline,
measured in the same run on the same data, is reading every event with the same
lean read in the same batches, folding nothing: the fastest a replay could go.
Target: ≥ 50,000 events/s on 2 cores.
"""

import argparse
import time
import uuid
from datetime import UTC, datetime, timedelta

from bench.report import machine, print_table
from schemas import GENESIS_HASH, Heartbeat, SealedEvent, seal, utc_text
from services.eventstore import Cursor, open_event_store, upgrade_schema
from services.projector import replay
from simulation import HandpieceSimulator, fleet_device_ids
from tests.support.postgres import TemporaryPostgres

START = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
_NAMESPACE = uuid.UUID("0b6c2a4e-6d1f-4c3e-9a7e-2f1f0c9d8e11")


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
            for reading in simulator.advance(moment):
                if isinstance(reading, Heartbeat):
                    continue
                seq += 1
                event = seal({
                    "event_id": str(uuid.uuid5(_NAMESPACE, f"{simulator.device_id}:{seq}")),
                    "device_id": simulator.device_id, "seq": seq, "type": reading.type,
                    "occurred_at": utc_text(reading.occurred_at),
                    "schema_version": 1, "data": dict(reading.data), "prev_hash": prev_hash,
                })  # fmt: skip
                streams[index].append(event)
                prev_hash = event.hash
                produced += 1
            heads[index] = (seq, prev_hash)
    return streams


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    total = parser.parse_args().events
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

        started = time.perf_counter()
        cursor, read = Cursor.START, 0
        while stored := store.read_records(cursor, 20_000):
            cursor, read = stored[-1].cursor, read + len(stored)
        baseline = read / (time.perf_counter() - started)

        result = replay(url, store)
        store.close()
    print_table(
        f"Replay of {result.events:,} events, {result.devices} devices ({machine()})",
        ("coreline replay", "read only (ceiling)", "of ceiling", "target"),
        [
            (
                f"{result.rate:,.0f} events/s",
                f"{baseline:,.0f} events/s",
                f"{result.rate / baseline:.0%}",
                "≥ 50,000 events/s",
            )
        ],
    )


if __name__ == "__main__":
    main()
