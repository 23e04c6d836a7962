"""The sealed protocol vector (``HP-000014.sealed.json``, DESIGN §4.1) and messages
built from it."""

import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import count
from pathlib import Path
from typing import Any

import orjson

from gateway.ingest import IngestCore, IngestOptions
from schemas import PlatformAck, ResendCommand, device_topic
from schemas.topics import DeviceChannel
from seal_keys import SealKey
from services.eventstore import EventStore
from transport import Backoff, Message

SEALED_DEVICE = "HP-000014"
NOW = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
_mids = count(1)


@dataclass(frozen=True)
class SealedVector:
    document: dict[str, Any]

    @property
    def device_id(self) -> str:
        return str(self.document["device_id"])

    @property
    def key(self) -> SealKey:
        return SealKey.from_seed(bytes.fromhex(self.document["private_key_seed_hex"]))

    @property
    def public_key(self) -> str:
        return str(self.document["public_key"])

    @property
    def key_id(self) -> str:
        return str(self.document["key_id"])

    @property
    def topic(self) -> str:
        return device_topic(self.device_id, DeviceChannel.EVENTS)

    def batches(self) -> list[bytes]:
        return [orjson.dumps(batch) for batch in self.document["batches"]]

    def invalid(self) -> list[tuple[str, bytes]]:
        return [(case["name"], orjson.dumps(case["payload"])) for case in self.document["invalid"]]

    def events(self) -> list[dict[str, Any]]:
        return [event for batch in self.document["batches"] for event in batch["events"]]


def load_sealed(vectors_dir: Path) -> SealedVector:
    return SealedVector(json.loads((vectors_dir / f"{SEALED_DEVICE}.sealed.json").read_text()))


class SealSource:
    """The ingest core's source port: queued messages in, acknowledgements recorded."""

    def __init__(self, payloads: Sequence[tuple[str, bytes]]) -> None:
        self.queued = [
            Message(topic, payload, 1, False, next(_mids), 1, NOW) for topic, payload in payloads
        ]
        self.acknowledged: list[Message] = []
        self.acks: list[tuple[str, PlatformAck]] = []

    def take(self, max_messages: int, linger_s: float, timeout_s: float) -> list[Message]:
        taken, self.queued = self.queued[:max_messages], self.queued[max_messages:]
        return taken

    def acknowledge(self, messages: Sequence[Message]) -> None:
        self.acknowledged.extend(messages)

    def send_command(self, device_id: str, command: ResendCommand) -> None:
        pass

    def send_ack(self, device_id: str, ack: PlatformAck) -> None:
        self.acks.append((device_id, ack))


def ingest(
    store: EventStore, payloads: Sequence[tuple[str, bytes]], one_by_one: bool = True
) -> SealSource:
    source = SealSource(payloads)
    core = IngestCore(
        lambda: store,
        source,
        IngestOptions(max_batch_messages=1 if one_by_one else 2000),
        clock=lambda: 0.0,
        store_backoff=Backoff(base_s=0.001, cap_s=0.01),
    )
    stop = threading.Event()
    while (batch := core.collect(timeout_s=0)).messages:
        core.commit(batch, stop)
    return source
