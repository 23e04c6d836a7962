"""The gateway's ingest core: collect → decode → append → acknowledge.

No MQTT here: messages come from a ``Source`` (the broker adapter, or a fake in
unit tests) and go into an ``EventStore`` (any adapter, the in-memory one in unit
tests).  A batch's events and dead letters are committed in one store transaction,
then its heartbeats and presence changes; only then are its messages acknowledged,
so a message the broker considers delivered is always stored: a crash at any
instant leaves unacknowledged messages, which the broker redelivers to the
persistent session, and the store discards them as duplicates (a retried heartbeat
may be stored twice; telemetry is best effort).

While the store is away the batch is retried with backoff, never dropped and never
acknowledged.  A batch the store refuses for a value in it is halved until the
poisonous message stands alone, and that one is dead-lettered with the store's
reason, so one bad message never blocks every device behind it.
"""

import functools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final, Protocol

from prometheus_client import Counter

from gateway import metrics
from gateway.acks import DEFAULT_INTERVAL_S, AckCoalescer
from gateway.gap_watch import GapWatch
from gateway.gaps import GapTracker
from gateway.inbound import PresenceChange, interpret
from gateway.seal_gate import Claim, KeyCache, judge
from schemas import (
    GENESIS_HASH,
    DecodedBatch,
    Heartbeat,
    PlatformAck,
    Rejection,
    RejectionReason,
    ResendCommand,
    SealedEvent,
)
from schemas.streams import device_stream, is_device_stream
from schemas.topics import parse_device_topic
from services.eventstore import (
    DeadLetter,
    EventStore,
    EventStoreError,
    StoreRefusedValueError,
    StreamSeal,
)
from transport import Backoff, Message

log = logging.getLogger(__name__)

_REFUSAL_DETAIL_LIMIT: Final = 500
_NOTHING_STORED: Final = PlatformAck(stored_through=0, hash=GENESIS_HASH)


class Source(Protocol):
    """Where messages come from and where their acknowledgements go."""

    def take(self, max_messages: int, linger_s: float, timeout_s: float) -> list[Message]: ...

    def acknowledge(self, messages: Sequence[Message]) -> None: ...

    def send_command(self, device_id: str, command: ResendCommand) -> None: ...

    def send_ack(self, device_id: str, ack: PlatformAck) -> None: ...


@dataclass(frozen=True, slots=True)
class IngestOptions:
    linger_s: float = 0.005
    """How long a batch that is not full waits for more messages before committing."""
    max_batch_messages: int = 2000
    gap_grace_s: float = 30.0
    gap_retry_every_s: float = 60.0
    gap_max_attempts: int = 5
    ack_interval_s: float = DEFAULT_INTERVAL_S
    """At most one platform acknowledgement per device per this many seconds."""


@dataclass(slots=True)
class Batch:
    """Messages taken together, and what they decoded to."""

    messages: list[Message] = field(default_factory=list)
    events: list[SealedEvent] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    heartbeats: list[Heartbeat] = field(default_factory=list)
    presence: list[PresenceChange] = field(default_factory=list)
    claims: list[Claim] = field(default_factory=list)
    """Each event batch's events and dead letters again, with its seal: the unit the
    seal gate admits or refuses whole."""


@functools.cache
def _message_counter(channel: str) -> Counter:
    # A labelled child looked up once: ``labels()`` costs a lock and a dict per call.
    return metrics.MESSAGES.labels(channel)


def decode(messages: Sequence[Message], *, count: bool = True) -> Batch:
    """What ``messages`` mean; ``count`` them in the metrics the first time only."""
    batch = Batch(messages=list(messages))
    for message in messages:
        if count:
            parsed = parse_device_topic(message.topic)
            _message_counter(parsed.channel.value if parsed else "other").inc()
        outcome = interpret(message.topic, message.payload, message.received_at)
        if isinstance(outcome, DecodedBatch):
            letters = [DeadLetter(message.topic, r) for r in outcome.rejections]
            batch.events.extend(outcome.events)
            if count:
                metrics.EVENTS_RECEIVED.inc(len(outcome.events) + len(outcome.rejections))
            batch.dead_letters.extend(letters)
            device = parse_device_topic(message.topic)
            if device is not None:
                batch.claims.append(
                    Claim(message.topic, message.payload, device.device_id,
                          list(outcome.events), letters, outcome.seal)
                )  # fmt: skip
        elif isinstance(outcome, Rejection):
            batch.dead_letters.append(DeadLetter(message.topic, outcome))
        elif isinstance(outcome, Heartbeat):
            batch.heartbeats.append(outcome)
        elif isinstance(outcome, PresenceChange):
            batch.presence.append(outcome)
    return batch


class IngestCore:
    """One instance per gateway: ``collect`` may run on one thread while ``commit``
    and ``request_missing_events`` run on another (the store is used by that one)."""

    def __init__(
        self,
        open_store: Callable[[], EventStore],
        source: Source,
        options: IngestOptions | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        store_backoff: Backoff | None = None,
    ) -> None:
        self._open_store = open_store
        self._store: EventStore | None = None
        self._source = source
        self.options = options or IngestOptions()
        self._clock = clock
        self._gaps = GapWatch(
            GapTracker(
                self.options.gap_grace_s,
                self.options.gap_retry_every_s,
                self.options.gap_max_attempts,
            )
        )
        # Capped low: a retry is one connection attempt, and after a failover the new
        # primary should see the gateway back within seconds (docs/high-availability.md).
        self._store_backoff = store_backoff or Backoff(base_s=0.2, cap_s=3.0)
        self._acks = AckCoalescer(self.options.ack_interval_s)
        self._came_online: dict[str, int | None] = {}
        """Devices whose ``online`` status was stored, with the head each reported."""
        self._keys = KeyCache(clock=clock)

    def collect(self, timeout_s: float = 0.1) -> Batch:
        """The next batch of messages, decoded (empty when none came within ``timeout_s``)."""
        messages = self._source.take(
            self.options.max_batch_messages, self.options.linger_s, timeout_s
        )
        return decode(messages)

    def commit(self, batch: Batch, stop: threading.Event) -> None:
        """Store the batch, retrying while the store is away; then acknowledge it.
        Returns without acknowledging only when ``stop`` is set first."""
        while not stop.is_set():
            try:
                self._write(batch)
            except StoreRefusedValueError as error:
                metrics.STORE_FAILURES.inc()
                self._drop_store()
                self._isolate_poison(batch, error, stop)
                return
            except EventStoreError as error:  # away, busy, or not migrated yet: wait
                self._wait_for_store(error, stop)
                continue
            self._store_backoff.reset()
            self._source.acknowledge(batch.messages)
            return

    def request_missing_events(self) -> None:
        """Ask devices for the events their stored streams lack, as they fall due."""
        for request in self._gaps.due(self._clock()):
            command = ResendCommand(cmd="resend", from_seq=request.from_seq, to_seq=request.to_seq)
            self._source.send_command(request.device_id, command)
            metrics.GAPS_REQUESTED.inc()
            log.info(
                "asked %s to resend %d..%d (attempt %d)",
                request.device_id, request.from_seq, request.to_seq, request.attempt,
            )  # fmt: skip

    def publish_acks(self) -> None:
        """Publish the platform acknowledgements that are due (after the commits that
        moved them); answer each device that came online with its stored head at once,
        and ask it for the tail it holds beyond that head."""
        now = self._clock()
        if self._came_online:
            came_online, self._came_online = self._came_online, {}
            try:
                store = self._store_or_open()
                for device_id, device_head in came_online.items():
                    self._greet(store, device_id, device_head, now)
            except EventStoreError as error:
                log.warning("could not read heads for devices online: %s", _first_line(error))
                self._came_online.update(came_online)
                self._drop_store()
        for device_id, ack in self._acks.due(now):
            self._send_ack(device_id, ack)

    def close(self) -> None:
        self._drop_store()

    def _greet(
        self, store: EventStore, device_id: str, device_head: int | None, now: float
    ) -> None:
        head = store.head(device_stream(device_id))
        stored = PlatformAck(stored_through=head.seq, hash=head.hash) if head else _NOTHING_STORED
        self._send_ack(device_id, self._acks.now_due(device_id, stored, now))
        if device_head is not None and device_head > stored.stored_through:
            # A tail never waits for a later event to reveal it as a gap.
            command = ResendCommand(
                cmd="resend", from_seq=stored.stored_through + 1, to_seq=device_head
            )
            self._source.send_command(device_id, command)
            metrics.TAILS_REQUESTED.inc()
            log.info("asked %s for its tail %d..%d", device_id, command.from_seq, device_head)

    def _send_ack(self, device_id: str, ack: PlatformAck) -> None:
        self._source.send_ack(device_id, ack)
        metrics.ACKS_PUBLISHED.inc()

    # -- storing -----------------------------------------------------------

    def _wait_for_store(self, error: Exception, stop: threading.Event) -> None:
        metrics.STORE_FAILURES.inc()
        self._drop_store()
        delay = self._store_backoff.next_delay()
        log.warning("store unavailable (%s); retrying in %.1fs", _first_line(error), delay)
        stop.wait(delay)

    def _isolate_poison(
        self, batch: Batch, error: StoreRefusedValueError, stop: threading.Event
    ) -> None:
        if len(batch.messages) == 1:
            (message,) = batch.messages
            log.error("the store refused a message on %s: %s", message.topic, _first_line(error))
            refusal = Rejection(
                RejectionReason.SCHEMA,
                f"the store refused it: {_first_line(error)}"[:_REFUSAL_DETAIL_LIMIT],
                message.payload,
                getattr(parse_device_topic(message.topic), "device_id", None),
            )
            self.commit(
                Batch(messages=[message], dead_letters=[DeadLetter(message.topic, refusal)]), stop
            )
            return
        middle = len(batch.messages) // 2
        for half in (batch.messages[:middle], batch.messages[middle:]):
            self.commit(decode(half, count=False), stop)

    def _screen(self, store: EventStore, batch: Batch) -> tuple[Batch, tuple[StreamSeal, ...]]:
        """``batch`` less the event batches the seal gate refuses (each replaced by one
        ``signature`` dead letter), with the seals to store beside the rest."""
        verdict = judge(batch.claims, lambda device, key: self._keys.keys(store, device, key))
        if not verdict.refused:
            return batch, verdict.seals
        # By identity: a refused message's events may equal an admitted resend's.
        dropped = {id(item) for claim, _ in verdict.refused
                   for item in (*claim.events, *claim.dead_letters)}  # fmt: skip
        for claim, letter in verdict.refused:
            log.warning("%s: %s: %s", letter.rejection.reason.value, claim.device_id,
                        letter.rejection.detail)  # fmt: skip
        screened = Batch(
            messages=batch.messages,
            events=[event for event in batch.events if id(event) not in dropped],
            dead_letters=[
                *(letter for letter in batch.dead_letters if id(letter) not in dropped),
                *(letter for _, letter in verdict.refused),
            ],
            heartbeats=batch.heartbeats,
            presence=batch.presence,
        )
        return screened, verdict.seals

    def _write(self, batch: Batch) -> None:
        store = self._store_or_open()
        started = time.perf_counter()
        batch, seals = self._screen(store, batch)
        result = store.append(
            batch.events, batch.dead_letters, received_at=datetime.now(UTC), seals=seals
        )
        if batch.heartbeats:
            store.record_heartbeats(batch.heartbeats)
        for change in batch.presence:
            store.record_presence(change.device_id, change.online, change.at)
        metrics.COMMIT_SECONDS.observe(time.perf_counter() - started)
        metrics.BATCH_EVENTS.observe(len(batch.events))
        metrics.EVENTS_APPENDED.inc(result.appended)
        metrics.DUPLICATES.inc(result.duplicates)
        metrics.HEARTBEATS.inc(len(batch.heartbeats))
        for letter in (*batch.dead_letters, *result.rejected):
            metrics.DEAD_LETTERS.labels(letter.rejection.reason.value).inc()
        for letter in result.rejected:
            log.warning("integrity: %s", letter.rejection.detail)
        self._gaps.observe(store, batch.events, result.rejected, self._clock())
        for head in result.heads:
            if is_device_stream(head.stream_id):  # a device's stream is named by its id
                ack = PlatformAck(stored_through=head.seq, hash=head.hash)
                self._acks.stored(head.stream_id, ack)
        for change in batch.presence:
            if change.online:
                self._came_online[change.device_id] = change.last_seq

    def _store_or_open(self) -> EventStore:
        if self._store is None:
            self._store = self._open_store()
        return self._store

    def _drop_store(self) -> None:
        if self._store is not None:
            try:
                self._store.close()
            except Exception:
                log.debug("closing a failed store connection failed too", exc_info=True)
            self._store = None


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
