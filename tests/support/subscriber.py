"""A plain MQTT subscriber that records what reaches a topic filter, for assertions."""

import threading
import time
from types import TracebackType
from typing import Any, Self

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion


class RecordingSubscriber:
    """Subscribes at QoS 1 with a persistent session, so messages published while it
    is reconnecting (say, across a broker restart) are queued for it, not lost."""

    def __init__(
        self,
        port: int,
        topic_filter: str,
        client_id: str = "test-recorder",
        credentials: tuple[str, str] | None = None,
    ) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self._client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv311,
            clean_session=False,
        )
        self._client.on_connect = lambda c, *_: c.subscribe(topic_filter, qos=1)
        self._client.on_subscribe = lambda *_: self._subscribed.set()
        self._client.on_disconnect = lambda *_: self._subscribed.clear()
        self._client.on_message = self._record
        self._client.reconnect_delay_set(1, 1)
        if credentials:
            self._client.username_pw_set(*credentials)
        self._port = port

    def _record(self, _client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((message.topic, bytes(message.payload)))

    def __enter__(self) -> Self:
        self._client.connect("127.0.0.1", self._port)
        self._client.loop_start()
        if not self._subscribed.wait(10):
            raise RuntimeError("subscription not confirmed")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def wait_subscribed(self, timeout: float = 30.0) -> None:
        """After a broker restart: block until the subscription is in place again."""
        if not self._subscribed.wait(timeout):
            raise RuntimeError("subscription not restored")

    def events(self) -> list[dict[str, Any]]:
        """Every event of every batch received, in arrival order (duplicates kept)."""
        with self._lock:
            payloads = [payload for _, payload in self.messages]
        return [event for payload in payloads for event in orjson.loads(payload)["events"]]

    def wait_for(self, predicate: Any, timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self):
                return True
            time.sleep(0.05)
        return bool(predicate(self))

    def publish(self, topic: str, payload: bytes) -> None:
        self._client.publish(topic, payload, qos=1).wait_for_publish(10)
