"""Paho clients whose MQTT session outlives a dropped connection, as every Coreline
process that talks to the broker needs: the agent (its unacknowledged batches), the
gateway (the messages it has not acknowledged yet) and the notifier (its notices).

MQTT 5 resumes a session with ``clean_start=False`` and a session expiry on
CONNECT; MQTT 3.1.1 (an embedded broker) with ``clean_session=False``.
"""

from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from schemas.mqtt_url import BrokerAddress


def persistent_client(
    client_id: str,
    broker: BrokerAddress,
    protocol: MQTTProtocolVersion = MQTTProtocolVersion.MQTTv5,
    *,
    manual_ack: bool = False,
) -> mqtt.Client:
    """A client for ``broker`` (credentials, TLS) whose session persists."""
    v5 = protocol == MQTTProtocolVersion.MQTTv5
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=protocol,
        clean_session=None if v5 else False,
        manual_ack=manual_ack,
    )
    client.max_queued_messages_set(0)  # unbounded: the session's own flow control rules
    broker.configure(client)
    return client


def resume_session(
    client: mqtt.Client, session_expiry_s: int, receive_maximum: int | None = None
) -> dict[str, Any]:
    """Keyword arguments for ``connect``/``connect_async`` that resume the session
    (none for MQTT 3.1.1, where ``clean_session=False`` already does)."""
    if client.protocol != MQTTProtocolVersion.MQTTv5:
        return {}
    properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    properties.SessionExpiryInterval = session_expiry_s
    if receive_maximum is not None:
        properties.ReceiveMaximum = receive_maximum
    return {"clean_start": False, "properties": properties}
