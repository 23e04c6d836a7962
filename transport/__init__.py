"""MQTT for every Coreline process: the only package that imports paho.

Dependencies run one way, ``schemas ← transport ← {edge_agent, gateway, services}``:
the rest of the code speaks in the plain values defined here (``BrokerAddress``,
``Message``, ``Publication``) and never sees a paho type.
"""

from transport.address import BrokerAddress, MqttUrlError
from transport.backoff import Backoff
from transport.client import MqttClient, SessionListener, SessionOptions, SocketWatcher
from transport.message import Message, Publication, Will
from transport.multiplexer import SocketMultiplexer
from transport.settings import (
    DEFAULT_MQTT_URL,
    ConfigurationError,
    MqttSettings,
    SettingsT,
    load,
)

__all__ = [
    "DEFAULT_MQTT_URL",
    "Backoff",
    "BrokerAddress",
    "ConfigurationError",
    "Message",
    "MqttClient",
    "MqttSettings",
    "MqttUrlError",
    "Publication",
    "SessionListener",
    "SessionOptions",
    "SettingsT",
    "SocketMultiplexer",
    "SocketWatcher",
    "Will",
    "load",
]
