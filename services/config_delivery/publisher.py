"""The delivery loop's MQTT link: desired configurations, retained, on each device's
``config`` topic, and tracked commands on its ``cmd`` topic, both QoS 1.

A configuration is retained, so the broker hands the newest to a device whenever it
subscribes, however long it was away; publishing one again is harmless (the device
recognises a version it applied).  A command is not retained: the device's
persistent session holds it while it is offline, and the MQTT 5 message expiry
interval lets the broker drop it once it has expired."""

import threading
from datetime import datetime
from typing import Final

from schemas import DeviceChannel, device_topic
from schemas.device_config import CommandMessage, ConfigMessage
from transport import BrokerAddress, MqttClient, SessionListener, SessionOptions

_SESSION_EXPIRY_S: Final = 3600


class DeliveryPublisher(SessionListener):
    def __init__(self, broker: BrokerAddress, client_id: str = "coreline-config") -> None:
        self.connected = threading.Event()
        self._reconnected = threading.Event()
        self._mqtt = MqttClient(
            broker, SessionOptions(client_id=client_id, session_expiry_s=_SESSION_EXPIRY_S), self
        )

    def start(self) -> None:
        self._mqtt.start()

    def stop(self) -> None:
        self._mqtt.stop()

    def publish_config(self, device_id: str, message: ConfigMessage | None) -> None:
        """Retain ``message`` as the device's desired configuration; ``None`` clears
        the retained one (a decommissioned device is told nothing more)."""
        payload = b"" if message is None else message.model_dump_json().encode()
        self._mqtt.publish(device_topic(device_id, DeviceChannel.CONFIG), payload, retain=True)

    def publish_command(self, device_id: str, message: CommandMessage, now: datetime) -> None:
        expiry_s = int((message.expires_at - now).total_seconds())
        if expiry_s < 1:
            return  # expired already: the sweeper records it, nobody should run it
        payload = message.model_dump_json().encode()
        self._mqtt.publish(device_topic(device_id, DeviceChannel.CMD), payload, expiry_s=expiry_s)

    def take_reconnected(self) -> bool:
        """Whether the link (re)connected since last asked: everything retained is
        published again then, in case the broker lost its store."""
        if not self._reconnected.is_set():
            return False
        self._reconnected.clear()
        return True

    def on_connected(self, connection: int) -> None:
        self.connected.set()
        self._reconnected.set()

    def on_disconnected(self, reason: str) -> None:
        self.connected.clear()

    def on_protocol_changed(self) -> None:
        self._reconnected.set()
