"""The notifier's MQTT link (the only paho import of delivery): QoS 1 publishes, and
which of them the broker has acknowledged.

A persistent session (MQTT 5 ``clean_start=False`` with a session expiry, or 3.1.1
``clean_session=False``) plus paho's own queue mean a notice published while the
broker is away goes out when it is back, under the same packet id.  Notices are
tracked by a key (the notice's event id) so that retrying a batch does not queue a
second copy of a notice still waiting for its PUBACK.
"""

import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTProtocolVersion
from paho.mqtt.reasoncodes import ReasonCode

from edge_agent.mqtt_session import Mqtt5Probe, persistent_client, resume_session
from schemas.mqtt_url import BrokerAddress

log = logging.getLogger(__name__)

_SESSION_EXPIRY_S: Final = 24 * 3600


@dataclass(frozen=True, slots=True)
class _Pending:
    mid: int
    topic: str


class AlertPublisher:
    def __init__(self, broker: BrokerAddress, client_id: str = "coreline-notifier") -> None:
        self._broker = broker
        self._client_id = client_id
        self._changed = threading.Condition()
        self._pending: dict[str, _Pending] = {}
        self._answers: dict[int, ReasonCode | None] = {}
        """PUBACKs by packet id: ``None`` accepted, else the broker's refusal."""
        self._connected = threading.Event()
        self._client = self._new_client(MQTTProtocolVersion.MQTTv5)

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> None:
        self._connect()
        self._client.loop_start()

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    # -- publishing --------------------------------------------------------

    def publish(self, key: str, topic: str, payload: bytes) -> None:
        """Publish at QoS 1 unless ``key`` is already on its way (one caller thread)."""
        with self._changed:
            if key in self._pending:
                return
        # Outside our lock: paho calls ``_on_publish`` holding its own message lock,
        # which ``publish`` takes too, so nesting them the other way could deadlock.
        # Not connected is fine: paho keeps the message and sends it on reconnect.
        if self._mqtt5.overdue(self._client):
            self._fall_back_to_311()
        info = self._client.publish(topic, payload, qos=1)
        with self._changed:
            self._pending[key] = _Pending(info.mid, topic)

    def wait_acknowledged(self, keys: Iterable[str], timeout: float) -> bool:
        """Whether the broker accepted every one of ``keys`` within ``timeout``.

        A refused notice (say, the broker's ACL denies the topic) is dropped from
        tracking and reported ``False``, so the next publish of it goes out afresh.
        """
        wanted = list(keys)
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                waiting, refused = self._sort_out(wanted)
                if refused:
                    return False
                if not waiting:
                    return True
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(remaining)

    def forget(self, keys: Iterable[str]) -> None:
        """Stop tracking notices whose progress has been recorded."""
        with self._changed:
            for key in keys:
                pending = self._pending.pop(key, None)
                if pending is not None:
                    self._answers.pop(pending.mid, None)

    def _sort_out(self, keys: list[str]) -> tuple[list[str], list[str]]:
        waiting: list[str] = []
        refused: list[str] = []
        for key in keys:
            pending = self._pending.get(key)
            if pending is None:
                refused.append(key)  # never published (or refused before): publish again
                continue
            if pending.mid not in self._answers:
                waiting.append(key)
                continue
            refusal = self._answers[pending.mid]
            if refusal is not None:
                log.error(
                    "the broker refused the alert notice on %s: %s (check the notifier's ACL)",
                    pending.topic, refusal,
                )  # fmt: skip
                del self._pending[key], self._answers[pending.mid]
                refused.append(key)
        return waiting, refused

    # -- paho --------------------------------------------------------------

    def _new_client(self, protocol: MQTTProtocolVersion) -> mqtt.Client:
        self._mqtt5 = Mqtt5Probe()
        client = persistent_client(self._client_id, self._broker, protocol)
        client.reconnect_delay_set(1, 30)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        return client

    def _connect(self) -> None:
        self._client.connect_async(
            self._broker.host, self._broker.port, keepalive=30,
            **resume_session(self._client, _SESSION_EXPIRY_S),
        )  # fmt: skip

    def _on_connect(
        self, client: mqtt.Client, _userdata: Any, _flags: Any, reason: ReasonCode, _props: Any
    ) -> None:
        if self._mqtt5.refused(client, reason):
            self._fall_back_to_311()
            return
        if reason.is_failure:
            log.error("broker refused the notifier: %s", reason)
            return
        self._connected.set()
        log.info("notifier connected to %s:%d", self._broker.host, self._broker.port)

    def _fall_back_to_311(self) -> None:
        log.warning("broker lacks MQTT 5: the notifier uses 3.1.1")
        self._client.loop_stop()
        with self._changed:
            # The old client's queue goes with it: what it held is published anew.
            self._pending.clear()
            self._answers.clear()
            self._client = self._new_client(MQTTProtocolVersion.MQTTv311)
        self._connect()
        self._client.loop_start()

    def _on_disconnect(
        self, client: mqtt.Client, _userdata: Any, _flags: Any, reason: ReasonCode, _props: Any
    ) -> None:
        self._connected.clear()
        if self._mqtt5.dropped_unanswered(client):
            self._fall_back_to_311()
            return
        log.warning("notifier disconnected from the broker (%s); reconnecting", reason)

    def _on_publish(
        self, _client: mqtt.Client, _userdata: Any, mid: int, reason: ReasonCode, _props: Any
    ) -> None:
        with self._changed:
            self._answers[mid] = reason if reason.is_failure else None
            self._changed.notify_all()
