"""The handpiece's end of desired configuration (protocol v1.2): judging a
``ConfigMessage`` from the device's retained ``config`` topic against what it
enforces now, and keeping what it applied in its outbox file.

A handpiece applies a configuration that validates, is for itself, carries the
digest of its settings, does not contradict itself, and is newer than the one it
enforces; it records ``config.applied`` ``{version, digest}``.  Otherwise it
records ``config.refused`` ``{version, reason}`` and keeps enforcing what it had.
The retained message comes again on every reconnect: a version already applied, or
already refused with the same digest, records nothing more.  Until it has applied
any configuration a handpiece enforces ``DEFAULT_SETTINGS``.
"""

import sqlite3
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from pydantic import ValidationError

from edge_agent.device import DeviceReading
from schemas import describe
from schemas.device_config import (
    DEFAULT_SETTINGS,
    ConfigMessage,
    DeviceSettings,
    settings_digest,
    settings_problems,
)


@dataclass(frozen=True, slots=True)
class AppliedConfig:
    version: int
    digest: str
    settings: DeviceSettings


@dataclass(frozen=True, slots=True)
class ConfigMemory:
    """What the handpiece keeps: the configuration it enforces (``None``: the
    defaults) and the last version it refused, with that message's digest."""

    applied: AppliedConfig | None = None
    refused_version: int = 0
    refused_digest: str | None = None

    @property
    def settings(self) -> DeviceSettings:
        return DEFAULT_SETTINGS if self.applied is None else self.applied.settings


@dataclass(frozen=True, slots=True)
class ConfigDecision:
    memory: ConfigMemory
    """What to keep from now on."""
    reading: DeviceReading | None
    """``config.applied`` or ``config.refused``; ``None``: nothing to record."""

    @property
    def applied(self) -> AppliedConfig | None:
        """The configuration to enforce from now on, when this decision applies one."""
        if self.reading is None or self.reading.type != "config.applied":
            return None
        return self.memory.applied


def judge_config(
    payload: bytes, device_id: str, memory: ConfigMemory, now: datetime
) -> ConfigDecision:
    """Decide what to do with a message from the device's ``config`` topic."""
    if not payload:
        return ConfigDecision(memory, None)  # the retained configuration was cleared
    try:
        message = ConfigMessage.model_validate_json(payload)
    except ValidationError as error:
        return _refuse(memory, _version_named(payload), None, f"invalid: {describe(error)}", now)
    version, digest = message.version, message.digest
    applied = memory.applied
    if applied is not None and (applied.version, applied.digest) == (version, digest):
        return ConfigDecision(memory, None)  # the retained message, delivered again
    if (memory.refused_version, memory.refused_digest) == (version, digest):
        return ConfigDecision(memory, None)  # refused already
    reason = _problem(message, device_id, applied)
    if reason is not None:
        return _refuse(memory, version, digest, reason, now)
    kept = ConfigMemory(AppliedConfig(version, digest, message.settings))
    data = {"version": version, "digest": digest}
    return ConfigDecision(kept, DeviceReading("config.applied", now, data))


def _problem(message: ConfigMessage, device_id: str, applied: AppliedConfig | None) -> str | None:
    if message.device_id != device_id:
        return f"the configuration is for {message.device_id}, not this device"
    if settings_digest(message.settings) != message.digest:
        return "digest does not match the settings"
    if applied is not None and message.version <= applied.version:
        return f"version {message.version} is not newer than the applied version {applied.version}"
    problems = settings_problems(message.settings)
    return "; ".join(problems) if problems else None


def _refuse(
    memory: ConfigMemory, version: int, digest: str | None, reason: str, now: datetime
) -> ConfigDecision:
    kept = ConfigMemory(memory.applied, version, digest)
    data = {"version": version, "reason": reason[:2000]}
    return ConfigDecision(kept, DeviceReading("config.refused", now, data))


def _version_named(payload: bytes) -> int:
    """The version a malformed message names, if it names a plausible one (0 else)."""
    try:
        document: Any = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return 0
    version = document.get("version") if isinstance(document, dict) else None
    return version if isinstance(version, int) and 0 < version < 2**53 else 0


# -- kept in the outbox file ------------------------------------------------------


def load_memory(connection: sqlite3.Connection, device_id: str) -> ConfigMemory:
    row = connection.execute(
        "SELECT version, digest, settings, refused_version, refused_digest "
        "FROM applied_config WHERE device_id = ?",
        (device_id,),
    ).fetchone()
    if row is None:
        return ConfigMemory()
    version, digest, settings, refused_version, refused_digest = row
    applied = None
    if version > 0:
        applied = AppliedConfig(version, digest, DeviceSettings.model_validate_json(settings))
    return ConfigMemory(applied, refused_version, refused_digest)


def save_memory(connection: sqlite3.Connection, device_id: str, memory: ConfigMemory) -> None:
    applied = memory.applied
    connection.execute(
        "INSERT INTO applied_config "
        "(device_id, version, digest, settings, refused_version, refused_digest) "
        "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (device_id) DO UPDATE SET "
        "version = excluded.version, digest = excluded.digest, settings = excluded.settings, "
        "refused_version = excluded.refused_version, refused_digest = excluded.refused_digest",
        (
            device_id,
            0 if applied is None else applied.version,
            "" if applied is None else applied.digest,
            "{}" if applied is None else applied.settings.model_dump_json(),
            memory.refused_version,
            memory.refused_digest,
        ),
    )
