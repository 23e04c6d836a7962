"""Gateway decoding: CPU per event of what the gateway does to each message before the store.

    python -m bench.decode [--events 20000] [--rounds 5]

The same events, cut into batches of 50, 10 and 1 event, sealed and unsealed, go
through ``gateway.ingest.decode`` (topic, JSON, batch envelope, schema of every
event, its canonical form and hash check) and the seal gate (``judge``: one Ed25519
verification per sealed batch, keys cached), as the gateway's decoding thread takes
them: 2,000 messages at a time, each batch alive until the next one is decoded, with
the gateway's garbage-collector setting (``gateway.service.tune_collector``).

Beside it, in the same run and process: a floor that does only what any gateway
must (``orjson.loads`` of each payload and SHA-256 of its bytes, kept as long), and
the same decoding with Python's default collector setting.  CPU time of this
process (``time.process_time``), best of ``--rounds``; the ratio to the floor is
what to compare across runs on a machine whose load varies.

``--parts`` adds, for 50 sealed events a message, what no decoder of this protocol
with these models can leave out, each measured alone over the same payloads: parsing
the JSON, pydantic-core validating every event into plain dicts (and, beside it, into
its models, as the gateway did before ``schemas.validation.plain_schema``), the
members counted and the models' rules across members, one sorted ``orjson`` write
of each event, SHA-256 of it, and one Ed25519 verification a message.
"""

import argparse
import gc
import hashlib
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import orjson

from bench.append import fleet_events
from bench.report import machine, print_table
from bench.seals import _ENROLLED, _NO_KEY, _messages
from gateway.ingest import decode
from gateway.seal_gate import DeviceKeys, judge
from gateway.service import tune_collector
from schemas import DEVICE_EVENT_ADAPTER
from schemas.decode import _ADMITS, _validate_plain
from seal_keys import verify_claim
from transport import Message

_TAKE = 2000
"""Messages the gateway decodes together (``IngestOptions.max_batch_messages``)."""


def _floor(chunk: Sequence[Message]) -> list[Any]:
    return [(orjson.loads(m.payload), hashlib.sha256(m.payload).digest()) for m in chunk]


def _gateway(keys: DeviceKeys) -> Callable[[Sequence[Message]], Any]:
    def keys_of(_device: str, _key_id: str | None) -> DeviceKeys:
        return keys

    def run(chunk: Sequence[Message]) -> Any:
        batch = decode(chunk, count=False)
        verdict = judge(batch.claims, keys_of)
        assert not verdict.refused, verdict.refused[0][1].rejection.detail
        assert len(batch.dead_letters) == 0, batch.dead_letters[0].rejection.detail
        return batch

    return run


def _cpu_per_event(
    messages: list[Message], work: Callable[[Sequence[Message]], Any], events: int, rounds: int
) -> float:
    """Best CPU microseconds per event, the previous chunk's result kept alive while
    the next is decoded (the commit thread holds it in the gateway)."""
    best = float("inf")
    for _ in range(rounds):
        kept: Any = None
        started = time.process_time()
        for start in range(0, len(messages), _TAKE):
            kept = work(messages[start : start + _TAKE])
        best = min(best, time.process_time() - started)
        del kept
    return best / events * 1e6


def run(total: int, rounds: int) -> list[list[str]]:
    events = fleet_events(total)
    shapes = [(per_batch, sealed) for per_batch in (50, 10, 1) for sealed in (False, True)]
    payloads = {shape: _messages(events, shape[0], shape[1]) for shape in shapes}
    del events
    default_threshold = gc.get_threshold()
    default: dict[tuple[int, bool], float] = {}
    for shape, messages in payloads.items():
        keys = _ENROLLED if shape[1] else _NO_KEY
        default[shape] = _cpu_per_event(messages, _gateway(keys), total, rounds)
    tune_collector()
    rows = []
    try:
        for shape, messages in payloads.items():
            keys = _ENROLLED if shape[1] else _NO_KEY
            floor = _cpu_per_event(messages, _floor, total, rounds)
            tuned = _cpu_per_event(messages, _gateway(keys), total, rounds)
            per_batch, sealed = shape
            rows.append([
                f"{per_batch} per batch, {'sealed' if sealed else 'unsealed'}",
                f"{tuned:.1f} µs", f"{floor:.1f} µs", f"{tuned / floor:.1f}×",
                f"{default[shape]:.1f} µs",
            ])  # fmt: skip
    finally:
        gc.unfreeze()
        gc.set_threshold(*default_threshold)
    return rows


def parts(total: int, rounds: int) -> list[list[str]]:
    """CPU µs an event of each part every decoding of 50 sealed events a message pays."""
    events = fleet_events(total)
    messages = _messages(events, 50, True)
    del events
    documents = [orjson.loads(m.payload) for m in messages]
    raw_events = [event for document in documents for event in document["events"]]
    unsealed = [{k: v for k, v in event.items() if k != "hash"} for event in raw_events]
    bodies = [orjson.dumps(event, option=orjson.OPT_SORT_KEYS) for event in unsealed]
    batch = decode(messages, count=False)
    claims = [claim.seal for claim in batch.claims if claim.seal is not None]
    key = next(iter(_ENROLLED.public.values()))
    validate = DEVICE_EVENT_ADAPTER.validator.validate_python
    validate_plain = _validate_plain
    plain = [validate_plain(e) for e in raw_events]
    admitted = [
        (_ADMITS[fields["type"]], raw, fields)
        for raw, fields in zip(raw_events, plain, strict=True)
    ]

    def alone(work: Callable[[], Iterable[Any]]) -> float:
        # Each result let go as it is made.  Kept in a list, the 600-byte results of one
        # kind of call alone make the allocator give the heap's top back after each and
        # fault a page in for the next, 2.2 µs an event that the gateway's own mix of
        # allocations does not pay (``--parts`` once showed the sorted write at 2.6 µs).
        best = float("inf")
        for _ in range(rounds):
            started = time.process_time()
            deque(work(), maxlen=0)
            best = min(best, time.process_time() - started)
        return best / total * 1e6

    sort = orjson.OPT_SORT_KEYS
    measured = [
        (
            "orjson.loads of each message",
            alone(lambda: (orjson.loads(m.payload) for m in messages)),
        ),
        (
            "pydantic-core: each event's plain dicts",
            alone(lambda: (validate_plain(e) for e in raw_events)),
        ),
        (
            "members counted, the models' rules across members",
            alone(lambda: (admits(raw, fields) for admits, raw, fields in admitted)),
        ),
        (
            "orjson.dumps, sorted, of each event",
            alone(lambda: (orjson.dumps(e, option=sort) for e in unsealed)),
        ),
        ("SHA-256 of each body", alone(lambda: (hashlib.sha256(b).hexdigest() for b in bodies))),
        ("Ed25519, one a message", alone(lambda: (verify_claim(key, c) for c in claims))),
    ]
    # What a part costs beyond the generator that hands its results on.
    loop = alone(lambda: (event for event in raw_events))
    rows = [[name, f"{cost - loop:.1f} µs"] for name, cost in measured]
    rows.append(["sum", f"{sum(cost - loop for _, cost in measured):.1f} µs"])
    models = alone(lambda: (validate(e) for e in raw_events))
    rows.append(["(not paid: pydantic-core into the models)", f"{models - loop:.1f} µs"])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--parts", action="store_true", help="also the parts that stay")
    args = parser.parse_args()
    rows = run(args.events, args.rounds)
    print_table(
        f"gateway decode + seal gate, CPU per event ({args.events:,} events; {machine()})",
        ["shape", "gateway", "floor: orjson + sha256", "of floor", "default collector"],
        rows,
    )
    if args.parts:
        tune_collector()
        print_table(
            "the parts that stay, 50 sealed events a message, CPU per event",
            ["part", "cost"],
            parts(args.events, args.rounds),
        )


if __name__ == "__main__":
    main()
