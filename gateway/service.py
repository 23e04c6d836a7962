"""``coreline gateway``: the only door from devices into the event store.

Flow: the MQTT client's network thread queues each message as it arrives; the
writer (the calling thread) takes what is queued, up to a bound, waits a short
linger for company, decodes everything, and commits its events and dead letters in one store
transaction, then its heartbeats and presence changes.  Only then are the batch's
QoS 1 messages acknowledged (manual PUBACK), so a message the broker considers
delivered is always stored: a crash at any instant leaves unacknowledged
messages, which the broker redelivers to the persistent session, and the store
discards them as duplicates (a retried heartbeat may be stored twice; telemetry
is best effort).

Acknowledgements are only sent on the connection the message arrived on: after a
reconnect the broker redelivers every message it has not seen acknowledged, and
an old packet id may by then name a different message.

Back-pressure is MQTT's own: with nothing acknowledged, the broker stops sending
once ``receive_maximum`` messages are in flight, so a slow or absent database
holds messages in the broker, never in the gateway's memory.
"""

import logging
import queue
import sqlite3
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import MQTTProtocolVersion
from paho.mqtt.reasoncodes import ReasonCode

from edge_agent.backoff import Backoff
from edge_agent.mqtt_session import Mqtt5Probe, persistent_client, resume_session
from gateway import metrics
from gateway.gaps import GapTracker
from gateway.inbound import PresenceChange, interpret
from schemas import (
    DecodedBatch,
    DeviceChannel,
    Heartbeat,
    Rejection,
    RejectionReason,
    SealedEvent,
    device_topic,
    shared_subscription,
)
from schemas.mqtt_url import BrokerAddress
from schemas.streams import device_stream
from schemas.topics import EVENTS_FILTER, STATUS_FILTER, TELEMETRY_FILTER, parse_device_topic
from services.eventstore import DeadLetter, EventStore

log = logging.getLogger(__name__)

_SESSION_EXPIRY_S: Final = 24 * 3600


@dataclass(frozen=True, slots=True)
class GatewayOptions:
    client_id: str = "coreline-gateway"
    share_group: str | None = None
    """Join this MQTT 5 shared-subscription group so several gateways split the load."""
    linger_s: float = 0.005
    """How long a batch that is not full waits for more messages before committing."""
    max_batch_messages: int = 2000
    receive_maximum: int = 2000
    """QoS 1 messages the broker may have in flight to us, unacknowledged."""
    telemetry_queue_limit: int = 20_000
    """Queued messages beyond which QoS 0 telemetry is dropped (it is best effort)."""
    gap_grace_s: float = 30.0
    gap_retry_every_s: float = 60.0
    gap_max_attempts: int = 5


@dataclass(frozen=True, slots=True)
class _Message:
    topic: str
    payload: bytes
    mid: int
    qos: int
    connection: int
    received_at: datetime


@dataclass(slots=True)
class _Batch:
    messages: list[_Message] = field(default_factory=list)
    events: list[SealedEvent] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    heartbeats: list[Heartbeat] = field(default_factory=list)
    presence: list[PresenceChange] = field(default_factory=list)


class Gateway:
    def __init__(
        self,
        open_store: Callable[[], EventStore],
        broker: BrokerAddress,
        options: GatewayOptions | None = None,
    ) -> None:
        self._open_store = open_store
        self._store: EventStore | None = None
        self._broker = broker
        self.options = options or GatewayOptions()
        self._inbox: queue.Queue[_Message] = queue.Queue()
        self._connection = 0
        self._connected = threading.Event()
        self._client = self._new_client(MQTTProtocolVersion.MQTTv5)
        self._gaps = GapTracker(
            self.options.gap_grace_s, self.options.gap_retry_every_s, self.options.gap_max_attempts
        )
        self._contiguous: dict[str, int] = {}
        self._store_backoff = Backoff(base_s=0.2, cap_s=10.0)

    # -- lifecycle ---------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Decode on one thread and commit on this one, so the next batch is decoded
        while the database works on the last (psycopg releases the GIL as it waits)."""
        self._connect()
        self._client.loop_start()
        decoded: queue.Queue[_Batch] = queue.Queue(maxsize=2)
        decoder = threading.Thread(target=self._decode_loop, args=(decoded, stop), daemon=True)
        decoder.start()
        try:
            while not stop.is_set():
                try:
                    batch = decoded.get(timeout=0.1)
                except queue.Empty:
                    batch = None
                if batch is not None:
                    self._commit(batch, stop)
                self._request_missing_events()
                if self._mqtt5.overdue(self._client):
                    self._fall_back_to_311()
        finally:
            decoder.join(timeout=5)
            self._client.disconnect()
            self._client.loop_stop()
            if self._store is not None:
                self._store.close()

    def _decode_loop(self, decoded: "queue.Queue[_Batch]", stop: threading.Event) -> None:
        while not stop.is_set():
            batch = self._collect(stop)
            while batch.messages and not stop.is_set():
                try:
                    decoded.put(batch, timeout=0.1)
                except queue.Full:
                    continue
                break

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    # -- MQTT --------------------------------------------------------------

    def _new_client(self, protocol: MQTTProtocolVersion) -> mqtt.Client:
        self._mqtt5 = Mqtt5Probe()
        client = persistent_client(self.options.client_id, self._broker, protocol, manual_ack=True)
        client.reconnect_delay_set(1, 30)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        return client

    def _connect(self) -> None:
        """Connect with MQTT 5, or 3.1.1 where the broker lacks 5 (an embedded broker)."""
        resume = resume_session(self._client, _SESSION_EXPIRY_S, self.options.receive_maximum)
        self._client.connect_async(self._broker.host, self._broker.port, keepalive=30, **resume)

    def _on_connect(
        self, client: mqtt.Client, _userdata: Any, _flags: Any, reason: ReasonCode, _props: Any
    ) -> None:
        if self._mqtt5.refused(client, reason):
            self._fall_back_to_311()
            return
        if reason.is_failure:
            log.error("broker refused the gateway: %s", reason)
            return
        self._connection += 1
        topics = [(EVENTS_FILTER, 1), (TELEMETRY_FILTER, 0), (STATUS_FILTER, 1)]
        if self.options.share_group:
            topics = [(shared_subscription(t, self.options.share_group), q) for t, q in topics]
        client.subscribe(topics)
        log.info("connected to %s:%d", self._broker.host, self._broker.port)

    def _on_subscribe(
        self,
        _client: mqtt.Client,
        _userdata: Any,
        _mid: int,
        reasons: list[ReasonCode],
        _props: Any,
    ) -> None:
        refused = [reason for reason in reasons if reason.is_failure]
        if refused:
            log.error("the broker refused subscriptions: %s (check the gateway's ACL)", refused)
            return
        self._connected.set()
        metrics.CONNECTED.set(1)
        log.info("subscribed")

    def _fall_back_to_311(self) -> None:
        log.warning("broker lacks MQTT 5: using 3.1.1 (no receive maximum, no shared groups)")
        self._client.loop_stop()
        self._client = self._new_client(MQTTProtocolVersion.MQTTv311)
        self._connect()
        self._client.loop_start()

    def _on_disconnect(
        self, client: mqtt.Client, _userdata: Any, _flags: Any, reason: ReasonCode, _props: Any
    ) -> None:
        self._connected.clear()
        metrics.CONNECTED.set(0)
        if self._mqtt5.dropped_unanswered(client):
            self._fall_back_to_311()
            return
        log.warning("disconnected from the broker (%s); reconnecting", reason)

    def _on_message(self, _client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        is_telemetry = message.topic.endswith("/telemetry")
        if is_telemetry and self._inbox.qsize() >= self.options.telemetry_queue_limit:
            metrics.TELEMETRY_DROPPED.inc()
            return
        self._inbox.put(
            _Message(
                message.topic, bytes(message.payload), message.mid, message.qos,
                self._connection, datetime.now(UTC),
            )
        )  # fmt: skip
        metrics.IN_FLIGHT.inc()

    def _acknowledge(self, messages: Sequence[_Message]) -> None:
        for message in messages:
            metrics.IN_FLIGHT.dec()
            if message.qos > 0 and message.connection == self._connection:
                self._client.ack(message.mid, message.qos)

    # -- the writer --------------------------------------------------------

    def _collect(self, stop: threading.Event) -> _Batch:
        batch = _Batch()
        try:
            first = self._inbox.get(timeout=0.1)
        except queue.Empty:
            return batch
        batch.messages.append(first)
        deadline = time.monotonic() + self.options.linger_s
        while len(batch.messages) < self.options.max_batch_messages and not stop.is_set():
            remaining = deadline - time.monotonic()
            try:
                message = (
                    self._inbox.get(timeout=remaining)
                    if remaining > 0
                    else self._inbox.get_nowait()
                )
            except queue.Empty:
                break
            batch.messages.append(message)
        for message in batch.messages:
            self._interpret(message, batch)
        return batch

    def _interpret(self, message: _Message, batch: _Batch, *, count: bool = True) -> None:
        if count:
            parsed = parse_device_topic(message.topic)
            metrics.MESSAGES.labels(parsed.channel.value if parsed else "other").inc()
        outcome = interpret(message.topic, message.payload, message.received_at)
        if isinstance(outcome, DecodedBatch):
            batch.events.extend(outcome.events)
            if count:
                metrics.EVENTS_RECEIVED.inc(len(outcome.events) + len(outcome.rejections))
            batch.dead_letters.extend(DeadLetter(message.topic, r) for r in outcome.rejections)
        elif isinstance(outcome, Rejection):
            batch.dead_letters.append(DeadLetter(message.topic, outcome))
        elif isinstance(outcome, Heartbeat):
            batch.heartbeats.append(outcome)
        elif isinstance(outcome, PresenceChange):
            batch.presence.append(outcome)

    def _commit(self, batch: _Batch, stop: threading.Event, *, isolate: bool = True) -> None:
        """Store the batch, retrying while the database is away; then acknowledge.

        A failure that is not about reaching the database (the store refused some
        value) is narrowed down by halving the batch, so one poisonous message is
        dead-lettered alone instead of blocking every device behind it.
        """
        while not stop.is_set():
            try:
                self._write(batch)
            except Exception as error:  # noqa: BLE001 - any store failure: keep, retry
                metrics.STORE_FAILURES.inc()
                self._drop_store()
                if isolate and refuses_content(error):
                    self._isolate_poison(batch, error, stop)
                    return
                delay = self._store_backoff.next_delay()
                log.warning("store unavailable (%s); retrying in %.1fs", _first_line(error), delay)
                stop.wait(delay)
                continue
            self._store_backoff.reset()
            self._acknowledge(batch.messages)
            return

    def _isolate_poison(self, batch: _Batch, error: Exception, stop: threading.Event) -> None:
        if len(batch.messages) == 1:
            (message,) = batch.messages
            log.error("the store refused a message on %s: %s", message.topic, _first_line(error))
            refusal = Rejection(
                RejectionReason.SCHEMA,
                f"the store refused it: {type(error).__name__}: {_first_line(error)}"[:500],
                message.payload,
                getattr(parse_device_topic(message.topic), "device_id", None),
            )
            self._commit(
                _Batch(messages=[message], dead_letters=[DeadLetter(message.topic, refusal)]), stop
            )
            return
        middle = len(batch.messages) // 2
        for half in (batch.messages[:middle], batch.messages[middle:]):
            part = _Batch(messages=list(half))
            for message in half:
                self._interpret(message, part, count=False)
            self._commit(part, stop)

    def _write(self, batch: _Batch) -> None:
        store = self._store_or_open()
        started = time.perf_counter()
        result = store.append(batch.events, batch.dead_letters, received_at=datetime.now(UTC))
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
        self._track_gaps(store, batch.events, result.rejected)

    def _store_or_open(self) -> EventStore:
        if self._store is None:
            self._store = self._open_store()
        return self._store

    def _drop_store(self) -> None:
        if self._store is not None:
            try:
                self._store.close()
            except Exception:  # a broken connection may fail to close
                log.debug("closing a failed store connection failed too", exc_info=True)
            self._store = None

    # -- gaps --------------------------------------------------------------

    def _track_gaps(
        self, store: EventStore, events: Sequence[SealedEvent], rejected: Sequence[DeadLetter]
    ) -> None:
        seqs: dict[str, list[int]] = defaultdict(list)
        for event in events:
            seqs[event.device_id].append(event.seq)
        troubled = {letter.rejection.device_id for letter in rejected}
        now = time.monotonic()
        for device_id, device_seqs in seqs.items():
            known = self._contiguous.get(device_id)
            if (
                known is not None
                and device_id not in troubled
                and not self._gaps.has_open_gaps(device_id)
            ):
                fresh = sorted({seq for seq in device_seqs if seq > known})
                if fresh == list(range(known + 1, known + 1 + len(fresh))):
                    self._contiguous[device_id] = known + len(fresh)
                    continue
            stream = device_stream(device_id)
            through = store.contiguous_through(stream, known or 0)
            self._contiguous[device_id] = through
            gaps = store.find_gaps(stream, through)
            self._gaps.observe(device_id, [(gap.from_seq, gap.to_seq) for gap in gaps], now)
        metrics.GAPS_OPEN.set(self._gaps.open_gaps())

    def _request_missing_events(self) -> None:
        abandoned_before = self._gaps.abandoned
        for request in self._gaps.due(time.monotonic()):
            command = f'{{"cmd":"resend","from_seq":{request.from_seq},"to_seq":{request.to_seq}}}'
            self._client.publish(
                device_topic(request.device_id, DeviceChannel.CMD), command.encode(), qos=1
            )
            metrics.GAPS_REQUESTED.inc()
            log.info(
                "asked %s to resend %d..%d (attempt %d)",
                request.device_id, request.from_seq, request.to_seq, request.attempt,
            )  # fmt: skip
        if self._gaps.abandoned > abandoned_before:
            metrics.GAPS_ABANDONED.inc(self._gaps.abandoned - abandoned_before)
            log.error(
                "gave up on %d gaps after every resend attempt",
                self._gaps.abandoned - abandoned_before,
            )
        metrics.GAPS_OPEN.set(self._gaps.open_gaps())


def refuses_content(error: Exception) -> bool:
    """The database refused a value (not: it is away, busy or broken).  Anything not
    known to be about content is waited out and retried, never dead-lettered."""
    return isinstance(
        error,
        psycopg.DataError | psycopg.IntegrityError | sqlite3.DataError | sqlite3.IntegrityError,
    )


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
