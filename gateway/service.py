"""``coreline gateway``: the only door from devices into the event store.

An ``MqttSource`` (messages in, acknowledgements out) around an ``IngestCore``
(decode → append → acknowledge).  Decoding runs on one thread and committing on
another, so the next batch is decoded while the database works on the last
(psycopg releases the GIL as it waits).
"""

import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from gateway.ingest import Batch, IngestCore, IngestOptions
from gateway.mqtt_source import MqttSource, SourceOptions
from services.collector import collect_rarely
from services.eventstore import EventStore
from transport import BrokerAddress

log = logging.getLogger(__name__)

YOUNG_COLLECTION_THRESHOLD: Final = 200_000
"""Allocations between collections of the youngest generation in a gateway process."""


def tune_collector() -> None:
    """Set the cyclic garbage collector for a gateway process; call once, at start-up.

    A batch under decoding holds up to 2,000 messages, about ten collector-tracked
    objects per event, and every one of them lives until its batch is committed.
    With Python's defaults each would be traversed again and again as it ages
    through the generations, which cost as much CPU as decoding itself (half of the
    gateway's decode time, ``bench/decode.py`` shows it).  Batches are freed by
    reference counting, not by the collector (they hold no cycles), so collections
    can be rare; the modules, schemas and validators loaded at start-up are frozen
    out of them altogether (``services.collector``).
    """
    collect_rarely(YOUNG_COLLECTION_THRESHOLD)


@dataclass(frozen=True, slots=True)
class GatewayOptions:
    source: SourceOptions = field(default_factory=SourceOptions)
    ingest: IngestOptions = field(default_factory=IngestOptions)


class Gateway:
    def __init__(
        self,
        open_store: Callable[[], EventStore],
        broker: BrokerAddress,
        options: GatewayOptions | None = None,
    ) -> None:
        self.options = options or GatewayOptions()
        self._source = MqttSource(broker, self.options.source)
        self._core = IngestCore(open_store, self._source, self.options.ingest)

    def run(self, stop: threading.Event) -> None:
        self._source.start()
        decoded: queue.Queue[Batch] = queue.Queue(maxsize=2)
        decoder = threading.Thread(target=self._decode_loop, args=(decoded, stop), daemon=True)
        decoder.start()
        try:
            while not stop.is_set():
                try:
                    batch = decoded.get(timeout=0.1)
                except queue.Empty:
                    batch = None
                if batch is not None:
                    self._core.commit(batch, stop)
                self._core.publish_acks()
                self._core.request_missing_events()
        finally:
            decoder.join(timeout=5)
            self._source.stop()
            self._core.close()

    def wait_connected(self, timeout: float) -> bool:
        return self._source.wait_connected(timeout)

    def _decode_loop(self, decoded: "queue.Queue[Batch]", stop: threading.Event) -> None:
        while not stop.is_set():
            batch = self._core.collect()
            while batch.messages and not stop.is_set():
                try:
                    decoded.put(batch, timeout=0.1)
                except queue.Full:
                    continue
                break
