"""The gateway's MQTT side: device messages in, acknowledgements and commands out.

Messages wait in an in-memory queue until the ingest core takes them.  Back-pressure
is MQTT's own: with nothing acknowledged, the broker stops sending once
``receive_maximum`` messages are in flight, so a slow or absent database holds
messages in the broker, never in the gateway's memory.  QoS 0 telemetry is the
exception (nothing bounds it but the broker's rate), so past a limit it is dropped.
"""

import logging
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from gateway import metrics
from schemas import (
    DeviceChannel,
    PlatformAck,
    ResendCommand,
    device_topic,
    shared_subscription,
)
from schemas.topics import EVENTS_FILTER, STATUS_FILTER, TELEMETRY_FILTER
from transport import BrokerAddress, Message, MqttClient, SessionListener, SessionOptions

log = logging.getLogger(__name__)

DEFAULT_SESSION_EXPIRY_S: Final = 24 * 3600
SHARED_SESSION_EXPIRY_S: Final = 30
"""A shared-group member's session: short, so a dead member stops taking its share
soon (the broker keeps routing to a disconnected member's session until it expires),
and what its session swallowed is republished by the devices, unacknowledged."""


@dataclass(frozen=True, slots=True)
class SourceOptions:
    client_id: str = "coreline-gateway"
    share_group: str | None = None
    """Join this MQTT 5 shared-subscription group so several gateways split the load."""
    session_expiry_s: int = DEFAULT_SESSION_EXPIRY_S
    receive_maximum: int = 2000
    """QoS 1 messages the broker may have in flight to us, unacknowledged."""
    telemetry_queue_limit: int = 20_000
    """Queued messages beyond which QoS 0 telemetry is dropped (it is best effort)."""


class MqttSource(SessionListener):
    def __init__(self, broker: BrokerAddress, options: SourceOptions | None = None) -> None:
        self.options = options or SourceOptions()
        topics = [(EVENTS_FILTER, 1), (TELEMETRY_FILTER, 0), (STATUS_FILTER, 1)]
        if self.options.share_group:
            topics = [(shared_subscription(t, self.options.share_group), q) for t, q in topics]
        self._inbox: queue.Queue[Message] = queue.Queue()
        self._subscribed = threading.Event()
        self._mqtt = MqttClient(
            broker,
            SessionOptions(
                client_id=self.options.client_id,
                session_expiry_s=self.options.session_expiry_s,
                subscriptions=tuple(topics),
                manual_ack=True,
                receive_maximum=self.options.receive_maximum,
                reconnect_min_s=1.0,
            ),
            self,
        )

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> None:
        self._mqtt.start()

    def stop(self) -> None:
        self._mqtt.stop()

    def wait_connected(self, timeout: float) -> bool:
        """Whether the broker accepted our subscriptions within ``timeout``."""
        return self._subscribed.wait(timeout)

    # -- the ingest core's port ----------------------------------------------

    def take(self, max_messages: int, linger_s: float, timeout_s: float) -> list[Message]:
        """Wait up to ``timeout_s`` for a message, then up to ``linger_s`` for company,
        up to ``max_messages`` in all."""
        try:
            messages = [self._inbox.get(timeout=timeout_s)]
        except queue.Empty:
            return []
        deadline = time.monotonic() + linger_s
        while len(messages) < max_messages:
            remaining = deadline - time.monotonic()
            try:
                messages.append(
                    self._inbox.get(timeout=remaining)
                    if remaining > 0
                    else self._inbox.get_nowait()
                )
            except queue.Empty:
                break
        return messages

    def acknowledge(self, messages: Sequence[Message]) -> None:
        for message in messages:
            metrics.IN_FLIGHT.dec()
            self._mqtt.ack(message)

    def send_command(self, device_id: str, command: ResendCommand) -> None:
        self._mqtt.publish(
            device_topic(device_id, DeviceChannel.CMD), command.model_dump_json().encode(), qos=1
        )

    def send_ack(self, device_id: str, ack: PlatformAck) -> None:
        # Retained: a device that connects later reads its stored head from the broker.
        self._mqtt.publish(
            device_topic(device_id, DeviceChannel.ACKS),
            ack.model_dump_json().encode(),
            qos=1,
            retain=True,
        )

    # -- SessionListener -----------------------------------------------------

    def on_subscribed(self, refused: Sequence[str]) -> None:
        if refused:
            log.error("the broker refused subscriptions: %s (check the gateway's ACL)", refused)
            return
        self._subscribed.set()
        metrics.CONNECTED.set(1)
        log.info("subscribed")

    def on_disconnected(self, reason: str) -> None:
        self._subscribed.clear()
        metrics.CONNECTED.set(0)

    def on_protocol_changed(self) -> None:
        self.on_disconnected("protocol changed")

    def on_message(self, message: Message) -> None:
        if (
            message.topic.endswith("/telemetry")
            and self._inbox.qsize() >= self.options.telemetry_queue_limit
        ):
            metrics.TELEMETRY_DROPPED.inc()
            return
        self._inbox.put(message)
        metrics.IN_FLIGHT.inc()
