"""Paho clients whose MQTT session outlives a dropped connection, as every Coreline
process that talks to the broker needs: the agent (its unacknowledged batches), the
gateway (the messages it has not acknowledged yet) and the notifier (its notices).

MQTT 5 resumes a session with ``clean_start=False`` and a session expiry on
CONNECT; MQTT 3.1.1 (an embedded broker) with ``clean_session=False``.
"""

import time
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

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


class Mqtt5Probe:
    """Tells, from how a client's connection attempts end, that the broker lacks MQTT 5:
    it refused the CONNECT with a protocol error, or dropped the connection before
    answering it at all (an embedded broker that cannot parse a version 5 CONNECT with
    properties closes the socket unanswered).  Either way the caller goes on with
    3.1.1; a broker that answered once speaks 5, whatever happens later."""

    def __init__(self, answer_within_s: float = 10.0) -> None:
        self._answered = False
        self._deadline = time.monotonic() + answer_within_s

    def refused(self, client: mqtt.Client, reason: ReasonCode) -> bool:
        """On CONNACK: whether to fall back (``reason`` a protocol refusal of 5)."""
        self._answered = True
        return (
            reason.is_failure
            and "protocol" in str(reason).lower()
            and client.protocol == MQTTProtocolVersion.MQTTv5
        )

    def dropped_unanswered(self, client: mqtt.Client) -> bool:
        """On a disconnect: whether to fall back (5, and no CONNACK ever came)."""
        return client.protocol == MQTTProtocolVersion.MQTTv5 and not self._answered

    def overdue(self, client: mqtt.Client) -> bool:
        """Whether to fall back now: 5, and no CONNACK within the time allowed (paho
        itself would wait a whole keep-alive period, and lose what is published
        meanwhile to a broker that has no session for us yet)."""
        return (
            client.protocol == MQTTProtocolVersion.MQTTv5
            and not self._answered
            and time.monotonic() > self._deadline
        )
