"""Publishes the log's latest signed checkpoint, retained, on ``coreline/v1/log/checkpoint``
(DESIGN §11), so a witness subscribed to the broker gets the newest one at once.

Retained and QoS 1: the broker keeps the last one for every later subscriber.  After
each (re)connection the latest is published again, since a broker that lost its
retained store would otherwise serve nothing until the log next grows."""

import threading
from typing import Final

from transport import BrokerAddress, MqttClient, SessionListener, SessionOptions

CHECKPOINT_TOPIC: Final = "coreline/v1/log/checkpoint"
_SESSION_EXPIRY_S: Final = 3600


class CheckpointPublisher(SessionListener):
    def __init__(self, broker: BrokerAddress, client_id: str = "coreline-log") -> None:
        self._latest: bytes | None = None
        self._lock = threading.Lock()
        self._republish = threading.Event()
        self.connected = threading.Event()
        self._mqtt = MqttClient(
            broker, SessionOptions(client_id=client_id, session_expiry_s=_SESSION_EXPIRY_S), self
        )

    def start(self) -> None:
        self._mqtt.start()

    def stop(self) -> None:
        self._mqtt.stop()

    def publish(self, note: str) -> None:
        """Publish ``note`` as the latest checkpoint (a broker away gets it on reconnect)."""
        with self._lock:
            self._latest = note.encode()
        self._mqtt.publish(CHECKPOINT_TOPIC, note.encode(), qos=1, retain=True)

    def republish_if_reconnected(self) -> None:
        """From the keeper's thread: publish the latest again after a reconnection
        (never from the client's own callbacks, which run on its network thread)."""
        if not self._republish.is_set():
            return
        self._republish.clear()
        with self._lock:
            latest = self._latest
        if latest is not None:
            self._mqtt.publish(CHECKPOINT_TOPIC, latest, qos=1, retain=True)

    def on_connected(self, connection: int) -> None:
        self.connected.set()
        self._republish.set()

    def on_disconnected(self, reason: str) -> None:
        self.connected.clear()

    def on_protocol_changed(self) -> None:
        self._republish.set()
