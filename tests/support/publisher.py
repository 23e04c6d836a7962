"""A plain MQTT 5 publisher for feeding the gateway hand-made messages."""

from types import TracebackType
from typing import Self

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion


class Publisher:
    def __init__(self, port: int, client_id: str = "test-publisher") -> None:
        self._client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        self._client.max_inflight_messages_set(200)
        self._port = port

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> None:
        info = self._client.publish(topic, payload, qos=qos)
        if qos:
            info.wait_for_publish(30)

    def publish_many(self, messages: list[tuple[str, bytes]], qos: int = 1) -> None:
        """Publish without waiting for each acknowledgement, then wait for all."""
        infos = [self._client.publish(topic, payload, qos=qos) for topic, payload in messages]
        for info in infos:
            info.wait_for_publish(60)

    def __enter__(self) -> Self:
        self._client.connect("127.0.0.1", self._port)
        self._client.loop_start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._client.disconnect()
        self._client.loop_stop()
