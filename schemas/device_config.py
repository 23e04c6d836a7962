"""What the platform asks of a handpiece: its desired configuration (what it enforces
on the device itself) and tracked commands, and the messages that carry them
(protocol v1.2).

Cloud → device, both QoS 1:

* ``coreline/v1/devices/{device_id}/config``, **retained**: a ``ConfigMessage``.  The
  broker keeps the newest for the device, so a device that was offline gets it when
  it connects.  The device answers with a ``config.applied`` or ``config.refused``
  event in its own stream.
* ``coreline/v1/devices/{device_id}/cmd``: a ``CommandMessage`` (or the untracked
  ``resend`` of DESIGN §4, which the gateway sends).  The device answers with a
  ``command.acknowledged`` or ``command.rejected`` event; a command past its
  ``expires_at`` is rejected, not run.
"""

from enum import StrEnum
from typing import Annotated, Any, Final, Literal, Self

from pydantic import BaseModel, Field, StringConstraints, model_validator

from schemas.canonical import canonical_json, sha256_hex
from schemas.fields import (
    FROZEN_STRICT_SHAPE,
    Count,
    DeviceId,
    EventUuid,
    PositiveCount,
    UtcTimestamp,
)


class InterlockMode(StrEnum):
    """What the handpiece does when a rule it enforces is broken."""

    WARN = "warn"
    """Record the breach as an event and carry on."""
    BLOCK = "block"
    """Refuse to start or continue punching until the cause is gone."""


Seconds = Annotated[int, Field(strict=True, ge=1, le=86_400)]
Percent = Annotated[int, Field(strict=True, ge=1, le=100)]
Lot = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")]


class DeviceSettings(BaseModel):
    """The settings a handpiece enforces.  Every field has the fleet's default, so a
    layer (fleet, model, clinic, device) names only what it changes; the platform
    merges the layers in that order, later ones winning, within the manufacturer's
    bounds."""

    model_config = FROZEN_STRICT_SHAPE

    heartbeat_interval_s: Seconds = 30
    event_flush_interval_s: Seconds = 2
    """The longest an event waits in the outbox before a batch is published."""
    needle_life_warning_pct: Percent = 80
    needle_life_critical_pct: Percent = 95
    cartridge_life_mode: InterlockMode = InterlockMode.WARN
    """Past a cartridge's rated actuations: warn, or block punching."""
    recalled_lots: tuple[Lot, ...] = ()
    """Cartridge lots the handpiece refuses at ``cartridge.installed``."""
    service_due_at_actuations: Count | None = None
    """The device's lifetime actuation count at which service is overdue (the last
    service's count plus the interval); ``None``: no service limit."""
    service_overdue_mode: InterlockMode = InterlockMode.WARN
    """When service is overdue: warn, or lock the handpiece until serviced."""


DEFAULT_SETTINGS: Final = DeviceSettings()


class ConfigMessage(BaseModel):
    """The desired configuration of one device, as published (retained)."""

    model_config = FROZEN_STRICT_SHAPE

    device_id: DeviceId
    version: PositiveCount
    """Grows by one with every change of the device's merged settings."""
    settings: DeviceSettings
    digest: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
    """SHA-256 of the canonical JSON of ``settings``: what ``config.applied`` names."""


def settings_digest(settings: DeviceSettings) -> str:
    return sha256_hex(canonical_json(settings.model_dump(mode="json")))


def settings_problems(settings: DeviceSettings) -> list[str]:
    """What makes valid settings contradict themselves: a handpiece refuses them
    (``config.refused``), and the platform shows them before it publishes."""
    if settings.needle_life_warning_pct > settings.needle_life_critical_pct:
        return [
            f"needle_life_warning_pct {settings.needle_life_warning_pct} is above "
            f"needle_life_critical_pct {settings.needle_life_critical_pct}"
        ]
    return []


class CommandName(StrEnum):
    LOCK = "lock"
    UNLOCK = "unlock"
    REBOOT = "reboot"
    RESYNC = "resync"
    COLLECT_DIAGNOSTICS = "collect_diagnostics"
    RESEND = "resend"
    OVERRIDE_INTERLOCK = "override_interlock"
    """A manufacturer's override of an interlock (``args.interlock``), with its author."""


class CommandMessage(BaseModel):
    """A tracked command, as published on the device's ``cmd`` topic."""

    model_config = FROZEN_STRICT_SHAPE

    cmd: CommandName
    command_id: EventUuid
    expires_at: UtcTimestamp
    issued_by: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    args: dict[str, Any] = Field(default_factory=dict)


class _Args(BaseModel):
    model_config = FROZEN_STRICT_SHAPE


class NoArgs(_Args):
    """``unlock``, ``reboot``, ``resync``, ``collect_diagnostics``."""


class LockArgs(_Args):
    reason: Annotated[str, StringConstraints(max_length=200)] = ""


class ResendArgs(_Args):
    """A tracked ``resend``: the same range the gateway's untracked one names."""

    from_seq: PositiveCount
    to_seq: PositiveCount

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.to_seq < self.from_seq:
            raise ValueError(f"to_seq {self.to_seq} is below from_seq {self.from_seq}")
        return self


class OverrideArgs(_Args):
    interlock: Literal["cartridge_life", "recalled_lot", "service_overdue", "locked"]
    """Which interlock the manufacturer releases on this handpiece."""
    reason: Annotated[str, StringConstraints(max_length=200)] = ""


COMMAND_ARGS: Final[dict[CommandName, type[BaseModel]]] = {
    CommandName.LOCK: LockArgs,
    CommandName.UNLOCK: NoArgs,
    CommandName.REBOOT: NoArgs,
    CommandName.RESYNC: NoArgs,
    CommandName.COLLECT_DIAGNOSTICS: NoArgs,
    CommandName.RESEND: ResendArgs,
    CommandName.OVERRIDE_INTERLOCK: OverrideArgs,
}
"""What each command's ``args`` may hold: checked by the platform before it records
a command, and by the handpiece before it runs one."""


def check_command_args(cmd: CommandName, args: dict[str, Any]) -> BaseModel:
    """``args`` validated for ``cmd``; raises pydantic's ``ValidationError``."""
    return COMMAND_ARGS[cmd].model_validate(args)
