"""The notifier's MQTT link: QoS 1 publishes, and which of them the broker has
acknowledged.

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
from typing import Final

from transport import BrokerAddress, MqttClient, SessionListener, SessionOptions

log = logging.getLogger(__name__)

_SESSION_EXPIRY_S: Final = 24 * 3600


@dataclass(frozen=True, slots=True)
class _Pending:
    mid: int
    topic: str


class AlertPublisher(SessionListener):
    def __init__(self, broker: BrokerAddress, client_id: str = "coreline-notifier") -> None:
        self._changed = threading.Condition()
        self._pending: dict[str, _Pending] = {}
        self._answers: dict[int, str | None] = {}
        """PUBACKs by packet id: ``None`` accepted, else the broker's refusal."""
        self._connected = threading.Event()
        self._mqtt = MqttClient(
            broker, SessionOptions(client_id=client_id, session_expiry_s=_SESSION_EXPIRY_S), self
        )

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> None:
        self._mqtt.start()

    def stop(self) -> None:
        self._mqtt.stop()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    # -- publishing --------------------------------------------------------

    def publish(self, key: str, topic: str, payload: bytes, *, retain: bool = False) -> None:
        """Publish at QoS 1 unless ``key`` is already on its way (one caller thread);
        ``retain``: the broker keeps it as the topic's latest (an empty one clears it)."""
        with self._changed:
            if key in self._pending:
                return
        # Outside our lock: the client calls ``on_published`` from its network thread.
        # Not connected is fine: the session keeps the message and sends it on reconnect.
        publication = self._mqtt.publish(topic, payload, qos=1, retain=retain)
        with self._changed:
            self._pending[key] = _Pending(publication.mid, topic)

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

    # -- SessionListener ----------------------------------------------------

    def on_connected(self, connection: int) -> None:
        self._connected.set()

    def on_disconnected(self, reason: str) -> None:
        self._connected.clear()

    def on_protocol_changed(self) -> None:
        self._connected.clear()
        with self._changed:
            # The old client's queue went with it: what it held is published anew.
            self._pending.clear()
            self._answers.clear()

    def on_published(self, mid: int, refusal: str | None) -> None:
        with self._changed:
            self._answers[mid] = refusal
            self._changed.notify_all()
