"""What the broker hands a Coreline process, as a plain frozen value: nothing of
paho's leaves this package."""

from dataclasses import dataclass
from datetime import UTC, datetime

import paho.mqtt.client as mqtt


@dataclass(frozen=True, slots=True)
class Message:
    """One received message.  ``connection`` numbers the connection it came on: an
    acknowledgement is only valid there (after a reconnect the broker redelivers
    what it has not seen acknowledged, and an old packet id may name another
    message)."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    mid: int
    connection: int
    received_at: datetime

    @classmethod
    def _from_paho_message(cls, message: mqtt.MQTTMessage, connection: int) -> "Message":
        return cls(
            topic=message.topic,
            payload=bytes(message.payload),
            qos=message.qos,
            retain=bool(message.retain),
            mid=message.mid,
            connection=connection,
            received_at=datetime.now(UTC),
        )


@dataclass(frozen=True, slots=True)
class Will:
    """What the broker publishes for us when the connection dies unannounced."""

    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = True


@dataclass(frozen=True, slots=True)
class Publication:
    """A publish handed to the session: ``mid`` names it in ``on_published``;
    ``on_wire`` is false when there was no connection (a QoS 1 message then waits
    in the persistent session and goes out after the next connect)."""

    mid: int
    on_wire: bool
