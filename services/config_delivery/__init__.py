"""Desired configuration and tracked commands, the platform's end (protocol v1.2).

``ConfigBook`` folds the configuration layers, the registry and the devices' answers
into each device's desired configuration (versioned), its reported state and each
command's state; ``run_config_delivery`` is the loop (a thread of ``coreline
projector``) that keeps the book's tables and publishes over MQTT; ``views`` and
``issuing`` are what the API reads and writes.  See docs/device-configuration.md.
"""

from services.config_delivery.book import (
    Command,
    CommandState,
    ConfigBook,
    ConfigState,
    DeviceConfig,
)
from services.config_delivery.layers import (
    DeviceLayers,
    bounded,
    clinic_layer_problems,
    describe_layer,
    merge,
)
from services.config_delivery.loop import CHECKPOINT, ConfigDelivery, run_config_delivery
from services.config_delivery.tables import TABLES, config_layers, device_commands, device_config

__all__ = [
    "CHECKPOINT",
    "TABLES",
    "Command",
    "CommandState",
    "ConfigBook",
    "ConfigDelivery",
    "ConfigState",
    "DeviceConfig",
    "DeviceLayers",
    "bounded",
    "clinic_layer_problems",
    "config_layers",
    "describe_layer",
    "device_commands",
    "device_config",
    "merge",
    "run_config_delivery",
]
