"""The agent's MQTT link (the only paho import on the device side).

One ``DeviceLink`` per device: a non-blocking state machine (disconnected →
connecting → connected) driven by ``tick()``, so one thread can drive one real
agent or thousands of simulated ones over one selector (``edge_agent.driver``).

Delivery: events leave the outbox in seq order as batches at QoS 1 and are marked
sent only on their PUBACK.  After any reconnect, publishing restarts from the first
unacknowledged event, so a batch may reach the broker twice (identical bytes; the
gateway deduplicates) but never not at all.
"""

import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Final, Protocol

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.reasoncodes import ReasonCode
from pydantic import ValidationError

from edge_agent.backoff import Backoff
from edge_agent.mqtt_session import persistent_client, resume_session
from edge_agent.outbox import Outbox, OutboxEntry
from schemas import (
    MAX_BATCH_BYTES,
    MAX_BATCH_EVENTS,
    DeviceChannel,
    Heartbeat,
    ResendCommand,
    device_topic,
)
from schemas.mqtt_url import BrokerAddress

log = logging.getLogger(__name__)

ONLINE: Final = b'{"state":"online"}'
OFFLINE: Final = b'{"state":"offline"}'
_SESSION_EXPIRY_S: Final = 7 * 24 * 3600
_ENVELOPE_OVERHEAD: Final = 64
_LARGEST_EVENT: Final = 4096
"""Bounded by the schema (the longest text field is 2,000 characters)."""


@dataclass(frozen=True, slots=True)
class LinkSettings:
    max_batch_events: int = MAX_BATCH_EVENTS
    max_batch_bytes: int = MAX_BATCH_BYTES
    linger_s: float = 0.05
    """How long a batch that is not full waits for company before it goes."""
    max_inflight: int = 8
    """Batches published and not yet acknowledged."""
    keepalive_s: int = 30
    connect_timeout_s: float = 10.0


def batch_payload(device_id: str, entries: list[OutboxEntry]) -> bytes:
    """A wire batch built from stored event bytes, so resends are byte-identical."""
    events = b",".join(entry.wire for entry in entries)
    return b'{"device_id":"' + device_id.encode() + b'","events":[' + events + b"]}"


def split_batches(
    entries: list[OutboxEntry], max_events: int, max_bytes: int
) -> list[list[OutboxEntry]]:
    """Consecutive batches within both limits (a lone oversized event still goes alone)."""
    batches: list[list[OutboxEntry]] = [[]]
    size = 0
    for entry in entries:
        full = len(batches[-1]) >= max_events or size + len(entry.wire) + 1 > max_bytes
        if batches[-1] and full:
            batches.append([])
            size = 0
        batches[-1].append(entry)
        size += len(entry.wire) + 1
    return [batch for batch in batches if batch]


class SocketWatcher(Protocol):
    """Whoever multiplexes the links' sockets (paho's external-loop callbacks)."""

    def opened(self, link: "DeviceLink", sock: Any) -> None: ...

    def closed(self, link: "DeviceLink", sock: Any) -> None: ...

    def want_write(self, link: "DeviceLink", sock: Any, *, wanted: bool) -> None: ...


class DeviceLink:
    """One device's connection to the broker and the flow of its outbox over it."""

    def __init__(
        self,
        device_id: str,
        outbox: Outbox,
        broker: BrokerAddress,
        settings: LinkSettings | None = None,
        backoff: Backoff | None = None,
        watcher: SocketWatcher | None = None,
    ) -> None:
        self.device_id = device_id
        self._watcher = watcher
        self._outbox = outbox
        self._broker = broker
        self._settings = settings or LinkSettings()
        self._backoff = backoff or Backoff()
        self._protocol = MQTTProtocolVersion.MQTTv5
        self._events_topic = device_topic(device_id, DeviceChannel.EVENTS)
        self._status_topic = device_topic(device_id, DeviceChannel.STATUS)
        self._cmd_topic = device_topic(device_id, DeviceChannel.CMD)
        self._telemetry_topic = device_topic(device_id, DeviceChannel.TELEMETRY)
        self.client = self._new_client()
        self.connected = False
        self._attempt_started: float | None = None
        self._retry_at = 0.0
        self._inflight: dict[int, tuple[int, int]] = {}
        self._next_seq = 1
        self._lingering_since: float | None = None
        self._resends: deque[ResendCommand] = deque()
        self._maybe_unsent = True
        """False once the outbox had nothing more to send, until something changes:
        spares a query per tick for each of a thousand idle simulated devices."""

    # -- driving -----------------------------------------------------------

    def tick(self, now: float | None = None) -> None:
        """Advance the state machine: connect when due, then move events along."""
        moment = time.monotonic() if now is None else now
        if not self.connected:
            self._connect_if_due(moment)
            return
        self._serve_resends()
        self._publish_ready(moment)

    def notify_recorded(self) -> None:
        """New events are in the outbox for this device."""
        self._maybe_unsent = True

    def send_heartbeat(self, sample: Heartbeat) -> None:
        """Telemetry is QoS 0: while offline a sample is simply not sent."""
        if self.connected:
            self.client.publish(self._telemetry_topic, sample.model_dump_json().encode(), qos=0)

    def close(self, flush_s: float = 2.0) -> None:
        """Say goodbye properly: retained offline status, then disconnect."""
        if self.connected:
            info = self.client.publish(self._status_topic, OFFLINE, qos=1, retain=True)
            deadline = time.monotonic() + flush_s
            while not info.is_published() and time.monotonic() < deadline and self.connected:
                self.client.loop(0.05)
            self.client.disconnect()
        self.client.loop(0.05)
        self.connected = False

    def unacknowledged(self) -> int:
        return len(self._inflight)

    # -- connection --------------------------------------------------------

    def _new_client(self) -> mqtt.Client:
        client = persistent_client(f"agent-{self.device_id}", self._broker, self._protocol)
        client.max_inflight_messages_set(self._settings.max_inflight + 4)
        client.will_set(self._status_topic, OFFLINE, qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        if self._watcher is not None:
            watcher = self._watcher
            client.on_socket_open = lambda _c, _u, sock: watcher.opened(self, sock)
            client.on_socket_close = lambda _c, _u, sock: watcher.closed(self, sock)
            client.on_socket_register_write = lambda _c, _u, sock: watcher.want_write(
                self, sock, wanted=True
            )
            client.on_socket_unregister_write = lambda _c, _u, sock: watcher.want_write(
                self, sock, wanted=False
            )
        return client

    def _connect_if_due(self, now: float) -> None:
        if self._attempt_started is not None:
            if now - self._attempt_started < self._settings.connect_timeout_s:
                return  # waiting for CONNACK
            log.warning(
                "%s: no CONNACK within %.0fs", self.device_id, self._settings.connect_timeout_s
            )
            self._attempt_failed(now, protocol_suspect=True)
            return
        if now < self._retry_at:
            return
        try:
            self.client.connect(
                self._broker.host, self._broker.port, self._settings.keepalive_s,
                **resume_session(self.client, _SESSION_EXPIRY_S),
            )  # fmt: skip
        except OSError as error:
            log.info("%s: broker unreachable (%s)", self.device_id, error)
            self._attempt_failed(now, protocol_suspect=False)
            return
        self._attempt_started = now

    def _attempt_failed(self, now: float, *, protocol_suspect: bool) -> None:
        self._attempt_started = None
        self.connected = False
        if protocol_suspect:
            # A broker that answers TCP but never accepts our CONNECT may lack MQTT 5
            # (e.g. an embedded Python broker): alternate versions between attempts.
            self._protocol = (
                MQTTProtocolVersion.MQTTv311
                if self._protocol == MQTTProtocolVersion.MQTTv5
                else MQTTProtocolVersion.MQTTv5
            )
            self.client.disconnect()
            self.client = self._new_client()
        self._retry_at = now + self._backoff.next_delay()

    def _on_connect(
        self, client: mqtt.Client, _userdata: Any, _flags: Any, reason: ReasonCode, _props: Any
    ) -> None:
        if client is not self.client:
            return  # a client given up for another protocol version, answering late
        if reason.is_failure:
            log.warning("%s: broker refused the connection: %s", self.device_id, reason)
            self._attempt_failed(
                time.monotonic(), protocol_suspect="protocol" in str(reason).lower()
            )
            return
        self._attempt_started = None
        self.connected = True
        self._backoff.reset()
        self._inflight.clear()
        self._lingering_since = None
        self._maybe_unsent = True
        first_unsent = self._outbox.first_unsent_seq(self.device_id)
        self._next_seq = first_unsent or self._outbox.head(self.device_id)[0] + 1
        client.subscribe(self._cmd_topic, qos=1)
        client.publish(self._status_topic, ONLINE, qos=1, retain=True)
        log.info(
            "%s: connected (MQTT %s), resuming at seq %d",
            self.device_id,
            self._protocol.name,
            self._next_seq,
        )

    def _on_disconnect(
        self, client: mqtt.Client, _userdata: Any, _flags: Any, reason: ReasonCode, _props: Any
    ) -> None:
        if client is not self.client:
            # The client given up on an unanswered MQTT 5 CONNECT closes its socket later:
            # that says nothing about the connection in use now.
            return
        was_connected = self.connected
        self.connected = False
        if self._attempt_started is not None:
            self._attempt_failed(time.monotonic(), protocol_suspect=True)
            return
        if was_connected:
            log.info("%s: disconnected (%s)", self.device_id, reason)
            self._retry_at = time.monotonic() + self._backoff.next_delay()

    # -- events ------------------------------------------------------------

    def _publish_ready(self, now: float) -> None:
        max_bytes = self._settings.max_batch_bytes - _ENVELOPE_OVERHEAD - len(self.device_id)
        while self._maybe_unsent and len(self._inflight) < self._settings.max_inflight:
            entries = self._outbox.unsent(
                self.device_id,
                after_seq=self._next_seq - 1,
                max_events=self._settings.max_batch_events,
                max_bytes=max_bytes,
            )
            if not entries:
                self._maybe_unsent = False
                return
            if not self._batch_may_go(entries, max_bytes, now):
                return
            info = self.client.publish(
                self._events_topic, batch_payload(self.device_id, entries), qos=1
            )
            if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                return  # the connection just went; _on_disconnect takes it from here
            self._inflight[info.mid] = (entries[0].seq, entries[-1].seq)
            self._next_seq = entries[-1].seq + 1
            self._lingering_since = None

    def _batch_may_go(self, entries: list[OutboxEntry], max_bytes: int, now: float) -> bool:
        if len(entries) >= self._settings.max_batch_events:
            return True
        if sum(len(entry.wire) + 1 for entry in entries) > max_bytes - _LARGEST_EVENT:
            return True  # full by size: the next event may not fit
        if self._lingering_since is None:
            self._lingering_since = now
        return now - self._lingering_since >= self._settings.linger_s

    def _on_publish(
        self, client: mqtt.Client, _userdata: Any, mid: int, reason: ReasonCode, _props: Any
    ) -> None:
        if client is not self.client:
            return  # mids belong to one client: another's would mark the wrong batch
        span = self._inflight.pop(mid, None)
        if span is None:
            return  # status, resend or a retransmission from before a reconnect
        if reason.is_failure:
            # Kept unsent: it goes again after the next reconnect. Never dropped.
            log.error("%s: broker refused seq %d..%d: %s", self.device_id, *span, reason)
            return
        self._outbox.mark_sent(self.device_id, *span)
        self._maybe_unsent = True  # a slot is free for the next batch

    def _on_message(self, client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        if client is not self.client:
            return
        try:
            self._resends.append(ResendCommand.model_validate_json(message.payload))
        except ValidationError as error:
            log.warning(
                "%s: ignoring a malformed command: %s", self.device_id, error.errors()[0]["msg"]
            )

    def _serve_resends(self) -> None:
        while self._resends:
            command = self._resends.popleft()
            entries = self._outbox.between(self.device_id, command.from_seq, command.to_seq)
            missing = command.to_seq - command.from_seq + 1 - len(entries)
            if missing:
                log.warning(
                    "%s: resend %d..%d: %d events are past the resend window",
                    self.device_id, command.from_seq, command.to_seq, missing,
                )  # fmt: skip
            max_bytes = self._settings.max_batch_bytes - _ENVELOPE_OVERHEAD - len(self.device_id)
            for chunk in split_batches(entries, self._settings.max_batch_events, max_bytes):
                self.client.publish(self._events_topic, batch_payload(self.device_id, chunk), qos=1)
