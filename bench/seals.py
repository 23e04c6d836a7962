"""Device seals at the gateway: decode + verify CPU per event, sealed vs unsealed.

    python -m bench.seals [--events 20000] [--rounds 5]

The same events, cut into batches of 50, 10 and 1 event (an agent with a backlog, a
busy one, one publishing as events happen), go through what the gateway does with
each message before the store: ``gateway.ingest.decode`` (JSON, schema, canonical
hash of every event) and the seal gate (``gateway.seal_gate.judge``: one Ed25519
verification per batch, keys cached).  Unsealed: the same batches without a
``seal`` member, from devices with no key.  CPU time of this process, best of
``--rounds``, with the gateway process's collector setting
(``gateway.service.tune_collector``); no broker and no store, so the figure is the
seal's own cost.
"""

import argparse
import time
from collections.abc import Callable
from datetime import UTC, datetime
from itertools import count

from bench.append import fleet_events
from bench.report import machine, print_table
from edge_agent.batches import batch_payload
from edge_agent.outbox import OutboxEntry
from gateway.ingest import decode
from gateway.seal_gate import DeviceKeys, judge
from gateway.service import tune_collector
from schemas import DeviceChannel, SealedEvent, device_topic
from schemas.seals import Keyring
from seal_keys import PublicSealKey, SealKey
from transport import Message

_KEY = SealKey.derived("bench")
_ENROLLED = DeviceKeys(
    Keyring().registered(_KEY.public_raw), {_KEY.key_id: PublicSealKey(_KEY.public_raw)}, 0.0
)
_NO_KEY = DeviceKeys(Keyring(), {}, 0.0)


def _messages(events: list[SealedEvent], per_batch: int, sealed: bool) -> list[Message]:
    by_device: dict[str, list[SealedEvent]] = {}
    for event in events:
        by_device.setdefault(event.device_id, []).append(event)
    mids = count(1)
    now = datetime.now(UTC)
    messages = []
    for device_id, stream in by_device.items():
        topic = device_topic(device_id, DeviceChannel.EVENTS)
        for start in range(0, len(stream), per_batch):
            entries = [OutboxEntry(device_id, e.seq, e.wire_json())
                       for e in stream[start : start + per_batch]]  # fmt: skip
            payload = batch_payload(device_id, entries, _KEY if sealed else None)
            messages.append(Message(topic, payload, 1, False, next(mids), 1, now))
    return messages


def _cpu_per_event(messages: list[Message], keys: DeviceKeys, events: int, rounds: int) -> float:
    """Best CPU microseconds per event over ``rounds`` of decode + judge."""

    def keys_of(_device: str, _key_id: str | None) -> DeviceKeys:
        return keys

    best = float("inf")
    for _ in range(rounds):
        started = time.process_time()
        batch = decode(messages, count=False)
        verdict = judge(batch.claims, keys_of)
        best = min(best, time.process_time() - started)
        assert not verdict.refused, verdict.refused[0][1].rejection.detail
    return best / events * 1e6


def run(total: int, rounds: int, report: Callable[[list[list[str]]], None]) -> None:
    events = fleet_events(total)
    tune_collector()
    rows = []
    for per_batch in (50, 10, 1):
        unsealed = _cpu_per_event(_messages(events, per_batch, False), _NO_KEY, total, rounds)
        sealed = _cpu_per_event(_messages(events, per_batch, True), _ENROLLED, total, rounds)
        rows.append([f"{per_batch} per batch", f"{unsealed:.1f} µs", f"{sealed:.1f} µs",
                     f"{sealed / unsealed:.2f}×"])  # fmt: skip
    report(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    def report(rows: list[list[str]]) -> None:
        print_table(
            f"gateway decode + verify, CPU per event ({args.events:,} events; {machine()})",
            ["events per batch", "unsealed", "sealed", "sealed / unsealed"],
            rows,
        )

    run(args.events, args.rounds, report)


if __name__ == "__main__":
    main()
