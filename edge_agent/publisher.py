"""The agent's link to the platform: the flow of one device's outbox over MQTT.

One ``DeviceLink`` per device, driven by ``tick()`` on one thread, so one thread can
drive one real agent or thousands of simulated ones over one selector
(``edge_agent.driver``); the connection itself is ``transport``'s.

Delivery is end to end (DESIGN §4.2).  Events leave the outbox in seq order as
batches at QoS 1 and are marked sent on their PUBACK, but a PUBACK only says the
broker has them (a broker restart can still drop a batch).  They count as delivered
when the platform's ack, retained on the device's ``acks`` topic, covers them with
a hash matching the device's own chain.  Whatever the broker took and the platform
has not acknowledged is republished, same bytes, from the watermark on, on an
``AckClock`` (10 s, doubling to 5 min without progress), so a v1 platform that
never acks is not flooded and nothing is ever given up.  After any reconnect,
publishing restarts from the first unsent event.

Anchoring: a chain that was never confirmed to continue the platform's stream for
this id (a fresh outbox: new device, or a wiped board) is not published until the
platform has had its say: on connecting, the link waits up to ``anchor_wait_s`` for
the platform's ack (its live answer to the ``online`` status; failing that, the
retained one).  An ack naming a stored head re-bases the local chain after it
(``Outbox.acknowledge``); none (a new device, or a v1 platform) anchors it at
genesis.  An anchored chain is never re-based.  The ``online`` status carries the
anchored head so the platform can ask for a tail it lacks at once.
"""

import dataclasses
import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Protocol

from pydantic import ValidationError

from edge_agent.batches import SEAL_OVERHEAD, Sealer, batch_payload, split_batches
from edge_agent.custody import AckClock, AckVerdict, DeliveryState
from edge_agent.outbox import Outbox, OutboxBatch
from schemas import (
    GENESIS_HASH,
    MAX_BATCH_BYTES,
    MAX_BATCH_EVENTS,
    DeviceChannel,
    Heartbeat,
    PlatformAck,
    Presence,
    ResendCommand,
    StatusMessage,
    device_topic,
)
from transport import (
    BrokerAddress,
    Message,
    MqttClient,
    Publication,
    SessionListener,
    SessionOptions,
    SocketWatcher,
    Will,
)

if TYPE_CHECKING:
    from edge_agent.control import DeviceControl
    from schemas.device_config import DeviceSettings

__all__ = [
    "OFFLINE",
    "DeviceLink",
    "LinkSession",
    "LinkSettings",
    "batch_payload",
    "online_status",
    "split_batches",
]

log = logging.getLogger(__name__)

OFFLINE: Final = b'{"state":"offline"}'
_SESSION_EXPIRY_S: Final = 7 * 24 * 3600
_ENVELOPE_OVERHEAD: Final = 64 + SEAL_OVERHEAD
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
    ack_timeout_s: float = 10.0
    """How long sent events may wait for the platform's ack before they go again."""
    ack_timeout_cap_s: float = 300.0
    """The longest that wait grows to while no ack makes progress."""
    anchor_wait_s: float = 5.0
    """How long an unanchored chain waits, connected, for the retained ack."""


def online_status(state: DeliveryState) -> bytes:
    """The retained ``online`` status with the device's head (DESIGN §4.2).  An
    unanchored chain is provisional: until the platform has had its say it
    reports no head, as a device whose local chain is gone does."""
    seq, head = (state.head_seq, state.head_hash) if state.anchored else (0, GENESIS_HASH)
    status = StatusMessage(state=Presence.ONLINE, last_seq=seq, last_hash=head)
    return status.model_dump_json().encode()


class LinkSession(Protocol):
    """What the link needs of its MQTT session (an ``MqttClient``)."""

    @property
    def connected(self) -> bool: ...

    def tick(self, now: float | None = None) -> bool: ...

    def publish(
        self, topic: str, payload: bytes, qos: int = 1, *, retain: bool = False
    ) -> Publication: ...

    def stop(self) -> None: ...


class DeviceLink(SessionListener):
    """One device's connection to the broker and the flow of its outbox over it."""

    def __init__(
        self,
        device_id: str,
        outbox: Outbox,
        broker: BrokerAddress,
        settings: LinkSettings | None = None,
        watcher: SocketWatcher | None = None,
        *,
        sealer: Sealer | None = None,
    ) -> None:
        self.device_id = device_id
        self._sealer = sealer
        """The device's seal key: every batch and every resend is sealed with it."""
        self._outbox = outbox
        self._settings = settings = settings or LinkSettings()
        self._events_topic = device_topic(device_id, DeviceChannel.EVENTS)
        self._status_topic = device_topic(device_id, DeviceChannel.STATUS)
        self._telemetry_topic = device_topic(device_id, DeviceChannel.TELEMETRY)
        self._acks_topic = device_topic(device_id, DeviceChannel.ACKS)
        self._config_topic = device_topic(device_id, DeviceChannel.CONFIG)
        self._base_linger_s = settings.linger_s
        self.control: DeviceControl | None = None
        """Carries out configuration and tracked commands (``edge_agent.control``);
        without one the link serves only the gateway's ``resend``."""
        self._configs: deque[bytes] = deque()
        self._commands: deque[bytes] = deque()
        self._delivery = outbox.delivery_state(device_id)
        self.mqtt: LinkSession = MqttClient(
            broker,
            SessionOptions(
                client_id=f"agent-{device_id}",
                session_expiry_s=_SESSION_EXPIRY_S,
                subscriptions=(
                    (device_topic(device_id, DeviceChannel.CMD), 1),
                    (self._acks_topic, 1),
                    (self._config_topic, 1),
                ),
                max_inflight=settings.max_inflight + 4,
                # An unanchored chain has never heard the platform: a session the
                # broker kept for this id (acks queued for a board before a wipe)
                # would hand it stale acks that look fresh.
                fresh_start=not self._delivery.anchored,
                will=Will(self._status_topic, OFFLINE),
                keepalive_s=settings.keepalive_s,
                answer_within_s=settings.connect_timeout_s,
            ),
            self,
            watcher=watcher,
        )
        self._inflight: dict[int, tuple[int, int]] = {}
        self._next_seq = 1
        self._sent_through = 0
        """The highest seq the broker has taken, as far as this connection knows."""
        self._lingering_since: float | None = None
        self._backlog = False
        """The last batch published was full: what follows it has waited already."""
        self._resends: deque[ResendCommand] = deque()
        self._acks: deque[tuple[PlatformAck, bool]] = deque()
        self._held_ack: PlatformAck | None = None
        self._clock = AckClock(settings.ack_timeout_s, settings.ack_timeout_cap_s)
        self._session_began: float | None = None
        self._farewell_mid: int | None = None
        self.platform_acks = False
        """Whether the platform has acked this device since the link started (a v1
        platform never does)."""
        self._maybe_unsent = True
        """False once the outbox had nothing more to send, until something changes:
        spares a query per tick for each of a thousand idle simulated devices."""

    @property
    def connected(self) -> bool:
        """Connected, with the chain anchored: events flow."""
        return self.mqtt.connected and self._delivery.anchored

    @property
    def anchored(self) -> bool:
        return self._delivery.anchored

    @property
    def sending(self) -> bool:
        """Events may be waiting for the broker (unsent, or published without PUBACK)."""
        return self._maybe_unsent or bool(self._inflight)

    # -- driving -----------------------------------------------------------

    def tick(self, now: float | None = None) -> None:
        """Advance the state machine: connect when due, then move events along."""
        moment = time.monotonic() if now is None else now
        if not self.mqtt.tick(moment):
            return
        if self._session_began is None:
            self._session_began = moment
            self._clock.restart(moment, pending=self._sent_through > self._delivery.acked_seq)
        self._serve_acks(moment)
        if not self._delivery.anchored:
            if moment - self._session_began < self._settings.anchor_wait_s:
                return
            self._anchor_alone(moment)
        self._serve_control()
        self._serve_resends()
        self._republish_if_due(moment)
        self._publish_ready(moment)

    def notify_recorded(self) -> None:
        """New events are in the outbox for this device."""
        self._maybe_unsent = True

    def send_heartbeat(self, sample: Heartbeat) -> None:
        """Telemetry is QoS 0: while offline a sample is simply not sent."""
        if self.control is not None and not self.control.heartbeat_due(sample):
            return  # faster than the configured heartbeat interval
        if self.mqtt.connected:
            self.mqtt.publish(self._telemetry_topic, sample.model_dump_json().encode(), qos=0)

    def say_offline(self) -> None:
        """The first half of a proper goodbye: the retained offline status (the will
        is for unannounced deaths).  ``saying_offline`` until the broker has it."""
        if self.mqtt.connected:
            publication = self.mqtt.publish(self._status_topic, OFFLINE, qos=1, retain=True)
            self._farewell_mid = publication.mid if publication.on_wire else None

    @property
    def saying_offline(self) -> bool:
        return self._farewell_mid is not None and self.mqtt.connected

    def hang_up(self) -> None:
        """Disconnect (the driver's selector carries the DISCONNECT); an attempt
        still waiting for its CONNACK is abandoned, not retried in another version."""
        self.mqtt.stop()

    # -- SessionListener -----------------------------------------------------

    def on_connected(self, connection: int) -> None:
        self._inflight.clear()
        self._lingering_since = None
        self._backlog = False
        self._maybe_unsent = True
        self._delivery = self._outbox.delivery_state(self.device_id)
        first_unsent = self._outbox.first_unsent_seq(self.device_id)
        self._next_seq = first_unsent or self._delivery.head_seq + 1
        self._sent_through = self._next_seq - 1
        self._session_began = None
        self._announce()
        log.info("%s: resuming at seq %d", self.device_id, self._next_seq)

    def on_protocol_changed(self) -> None:
        self._inflight.clear()  # the old client's packet ids name nothing now

    def on_published(self, mid: int, refusal: str | None) -> None:
        if mid == self._farewell_mid:
            self._farewell_mid = None
            return
        span = self._inflight.pop(mid, None)
        if span is None:
            return  # status, resend or a retransmission from before a reconnect
        if refusal is not None:
            # Kept unsent: it goes again after the next reconnect. Never dropped.
            log.error("%s: broker refused seq %d..%d: %s", self.device_id, *span, refusal)
            return
        self._outbox.mark_sent(self.device_id, *span)
        self._sent_through = max(self._sent_through, span[1])
        self._maybe_unsent = True  # a slot is free for the next batch

    def on_message(self, message: Message) -> None:
        try:
            if message.topic == self._acks_topic:
                ack = PlatformAck.model_validate_json(message.payload)
                self._acks.append((ack, message.retain))
            elif message.topic == self._config_topic:
                self._configs.append(message.payload)
            elif self.control is not None:
                self._commands.append(message.payload)  # tracked or not: the control judges
            else:
                self._resends.append(ResendCommand.model_validate_json(message.payload))
        except ValidationError as error:
            log.warning("%s: ignoring a malformed message on %s: %s",
                        self.device_id, message.topic, error.errors()[0]["msg"])  # fmt: skip

    # -- acknowledgements ------------------------------------------------------

    def _announce(self) -> None:
        self.mqtt.publish(self._status_topic, online_status(self._delivery), qos=1, retain=True)

    def _serve_acks(self, now: float) -> None:
        while self._acks:
            ack, retained = self._acks.popleft()
            self.platform_acks = True
            if retained and not self._delivery.anchored:
                # A retained ack can lag the platform's head by its coalescing
                # interval (a board wiped just after its last events were stored
                # finds the ack before them), and re-basing on it would collide with
                # what is stored.  The platform answers our online status with its
                # head at once: wait for that, and settle for the best retained ack
                # only if no answer comes within the anchor wait.
                if self._held_ack is None or ack.stored_through > self._held_ack.stored_through:
                    self._held_ack = ack
                continue
            self._apply_ack(ack, now)

    def _apply_ack(self, ack: PlatformAck, now: float) -> None:
        outcome = self._outbox.acknowledge(self.device_id, ack.stored_through, ack.hash)
        self._delivery = state = outcome.state
        if outcome.recorded:
            self._maybe_unsent = True
        if outcome.verdict is AckVerdict.ADVANCE:
            self._next_seq = max(self._next_seq, state.acked_seq + 1)
            self._sent_through = max(self._sent_through, state.acked_seq)
            self._clock.progressed(now, pending=self._sent_through > state.acked_seq)
        elif outcome.verdict is AckVerdict.REBASE:
            log.warning("%s: the platform holds seq 1..%d of this id: continuing after it",
                        self.device_id, ack.stored_through)  # fmt: skip
            self._inflight.clear()
            self._sent_through = state.acked_seq
            self._next_seq = state.acked_seq + 1
            self._clock.progressed(now, pending=False)
            self._announce()
        elif outcome.verdict is AckVerdict.ANCHOR:
            self._announce()
        elif outcome.verdict is AckVerdict.MISMATCH and outcome.recorded:
            log.error("%s: the platform's stream at seq %d is not this device's chain",
                      self.device_id, ack.stored_through)  # fmt: skip
        if state.anchored:
            self._held_ack = None

    def _anchor_alone(self, now: float) -> None:
        """The anchor wait is over without the platform's answer: follow the best
        retained ack, or (none: a new device, or a v1 platform) start at genesis."""
        if self._held_ack is not None:
            self._apply_ack(self._held_ack, now)
            return
        log.info("%s: no ack from the platform: the chain starts at genesis", self.device_id)
        self._delivery = self._outbox.anchor(self.device_id)
        self._announce()

    def _republish_if_due(self, now: float) -> None:
        if self._sent_through <= self._delivery.acked_seq or not self._clock.due(now):
            return
        log.info("%s: seq %d..%d unacknowledged after %.0f s: publishing them again",
                 self.device_id, self._delivery.acked_seq + 1, self._sent_through,
                 self._clock.timeout_s)  # fmt: skip
        self._next_seq = self._delivery.acked_seq + 1
        self._maybe_unsent = True
        self._lingering_since = None
        self._clock.fired(now)

    # -- events ------------------------------------------------------------

    def _publish_ready(self, now: float) -> None:
        max_bytes = self._settings.max_batch_bytes - _ENVELOPE_OVERHEAD - len(self.device_id)
        while self._maybe_unsent and len(self._inflight) < self._settings.max_inflight:
            batch = self._outbox.next_batch(
                self.device_id, self._next_seq - 1, self._settings.max_batch_events, max_bytes
            )
            if batch is None:
                self._maybe_unsent = False
                return
            if not self._batch_may_go(batch, max_bytes, now):
                return
            publication = self.mqtt.publish(
                self._events_topic, batch_payload(self.device_id, batch, self._sealer), qos=1
            )
            if not publication.on_wire:
                return  # the connection just went; the reconnect starts again from here
            self._inflight[publication.mid] = (batch.first_seq, batch.last_seq)
            self._next_seq = batch.last_seq + 1
            self._lingering_since = None
            self._backlog = self._full(batch, max_bytes)
            self._clock.start(now)

    def _batch_may_go(self, batch: OutboxBatch, max_bytes: int, now: float) -> bool:
        if self._full(batch, max_bytes):
            return True
        if self._backlog:
            # The end of a backlog: its events were waiting already, and one short
            # batch after full ones is no flood of small messages.
            return True
        if self._lingering_since is None:
            self._lingering_since = now
        return now - self._lingering_since >= self._settings.linger_s

    def _full(self, batch: OutboxBatch, max_bytes: int) -> bool:
        """Full by count, or by size (the next event may not fit)."""
        return (
            len(batch.wires) >= self._settings.max_batch_events
            or batch.size > max_bytes - _LARGEST_EVENT
        )

    def _serve_control(self) -> None:
        if self.control is None:
            self._configs.clear()
            return
        while self._configs:
            self.control.take_config(self._configs.popleft(), self)
        while self._commands:
            self.control.take_command(self._commands.popleft(), self)

    # -- what commands ask of the link (``edge_agent.control.LinkActions``) -------

    def resync(self) -> None:
        """Announce the head again (the platform asks at once for a tail it lacks)
        and republish everything past the platform's acknowledgement."""
        self._announce()
        self._next_seq = self._delivery.acked_seq + 1
        self._maybe_unsent = True
        self._lingering_since = None

    def restart(self) -> None:
        """Start the link's loop over, as after a reconnect: state read again from
        the outbox, the device announced again (the MQTT session is kept)."""
        if self.mqtt.connected:
            self.on_connected(0)

    def apply_settings(self, settings: "DeviceSettings") -> None:
        """No event waits longer than the configured flush interval (the link's own
        linger is shorter by default, and stays so)."""
        linger_s = min(self._base_linger_s, float(settings.event_flush_interval_s))
        self._settings = dataclasses.replace(self._settings, linger_s=linger_s)

    def _serve_resends(self) -> None:
        while self._resends:
            self.serve_resend(self._resends.popleft())

    def serve_resend(self, command: ResendCommand) -> int:
        """Publish the stored events of ``command``'s range again (same bytes)."""
        entries = self._outbox.between(self.device_id, command.from_seq, command.to_seq)
        missing = command.to_seq - command.from_seq + 1 - len(entries)
        if missing:
            log.warning(
                "%s: resend %d..%d: %d events are past the resend window",
                self.device_id, command.from_seq, command.to_seq, missing,
            )  # fmt: skip
        max_bytes = self._settings.max_batch_bytes - _ENVELOPE_OVERHEAD - len(self.device_id)
        for chunk in split_batches(entries, self._settings.max_batch_events, max_bytes):
            payload = batch_payload(self.device_id, chunk, self._sealer)
            self.mqtt.publish(self._events_topic, payload, qos=1)
        return len(entries)
