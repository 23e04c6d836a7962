"""The agent's link to the platform: the flow of one device's outbox over MQTT.

One ``DeviceLink`` per device, driven by ``tick()`` on one thread, so one thread can
drive one real agent or thousands of simulated ones over one selector
(``edge_agent.driver``); the connection itself is ``transport``'s.

Delivery: events leave the outbox in seq order as batches at QoS 1 and are marked
sent only on their PUBACK.  After any reconnect, publishing restarts from the first
unacknowledged event, so a batch may reach the broker twice (identical bytes; the
gateway deduplicates) but never not at all.
"""

import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import Final

from pydantic import ValidationError

from edge_agent.outbox import Outbox, OutboxEntry
from schemas import (
    MAX_BATCH_BYTES,
    MAX_BATCH_EVENTS,
    DeviceChannel,
    Heartbeat,
    ResendCommand,
    device_topic,
)
from transport import (
    BrokerAddress,
    Message,
    MqttClient,
    SessionListener,
    SessionOptions,
    SocketWatcher,
    Will,
)

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


class DeviceLink(SessionListener):
    """One device's connection to the broker and the flow of its outbox over it."""

    def __init__(
        self,
        device_id: str,
        outbox: Outbox,
        broker: BrokerAddress,
        settings: LinkSettings | None = None,
        watcher: SocketWatcher | None = None,
    ) -> None:
        self.device_id = device_id
        self._outbox = outbox
        self._settings = settings or LinkSettings()
        self._events_topic = device_topic(device_id, DeviceChannel.EVENTS)
        self._status_topic = device_topic(device_id, DeviceChannel.STATUS)
        self._telemetry_topic = device_topic(device_id, DeviceChannel.TELEMETRY)
        cmd_topic = device_topic(device_id, DeviceChannel.CMD)
        self.mqtt = MqttClient(
            broker,
            SessionOptions(
                client_id=f"agent-{device_id}",
                session_expiry_s=_SESSION_EXPIRY_S,
                subscriptions=((cmd_topic, 1),),
                max_inflight=self._settings.max_inflight + 4,
                will=Will(self._status_topic, OFFLINE),
                keepalive_s=self._settings.keepalive_s,
                answer_within_s=self._settings.connect_timeout_s,
            ),
            self,
            watcher=watcher,
        )
        self._inflight: dict[int, tuple[int, int]] = {}
        self._next_seq = 1
        self._lingering_since: float | None = None
        self._resends: deque[ResendCommand] = deque()
        self._maybe_unsent = True
        """False once the outbox had nothing more to send, until something changes:
        spares a query per tick for each of a thousand idle simulated devices."""

    @property
    def connected(self) -> bool:
        return self.mqtt.connected

    # -- driving -----------------------------------------------------------

    def tick(self, now: float | None = None) -> None:
        """Advance the state machine: connect when due, then move events along."""
        moment = time.monotonic() if now is None else now
        if not self.mqtt.tick(moment):
            return
        self._serve_resends()
        self._publish_ready(moment)

    def notify_recorded(self) -> None:
        """New events are in the outbox for this device."""
        self._maybe_unsent = True

    def send_heartbeat(self, sample: Heartbeat) -> None:
        """Telemetry is QoS 0: while offline a sample is simply not sent."""
        if self.connected:
            self.mqtt.publish(self._telemetry_topic, sample.model_dump_json().encode(), qos=0)

    def close(self, flush_s: float = 2.0) -> None:
        """Say goodbye properly: retained offline status, then disconnect."""
        self.mqtt.goodbye(self._status_topic, OFFLINE, flush_s)

    def unacknowledged(self) -> int:
        return len(self._inflight)

    # -- SessionListener -----------------------------------------------------

    def on_connected(self, connection: int) -> None:
        self._inflight.clear()
        self._lingering_since = None
        self._maybe_unsent = True
        first_unsent = self._outbox.first_unsent_seq(self.device_id)
        self._next_seq = first_unsent or self._outbox.head(self.device_id)[0] + 1
        self.mqtt.publish(self._status_topic, ONLINE, qos=1, retain=True)
        log.info("%s: resuming at seq %d", self.device_id, self._next_seq)

    def on_protocol_changed(self) -> None:
        self._inflight.clear()  # the old client's packet ids name nothing now

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
            publication = self.mqtt.publish(
                self._events_topic, batch_payload(self.device_id, entries), qos=1
            )
            if not publication.on_wire:
                return  # the connection just went; the reconnect starts again from here
            self._inflight[publication.mid] = (entries[0].seq, entries[-1].seq)
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

    def on_published(self, mid: int, refusal: str | None) -> None:
        span = self._inflight.pop(mid, None)
        if span is None:
            return  # status, resend or a retransmission from before a reconnect
        if refusal is not None:
            # Kept unsent: it goes again after the next reconnect. Never dropped.
            log.error("%s: broker refused seq %d..%d: %s", self.device_id, *span, refusal)
            return
        self._outbox.mark_sent(self.device_id, *span)
        self._maybe_unsent = True  # a slot is free for the next batch

    def on_message(self, message: Message) -> None:
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
                self.mqtt.publish(self._events_topic, batch_payload(self.device_id, chunk), qos=1)
