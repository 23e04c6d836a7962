"""What the API and dashboard read of configuration delivery and commands: rows of
the delivery loop's tables, as plain values."""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, func, select

from schemas.device_config import DeviceSettings
from services.config_delivery.book import Command, ConfigState
from services.config_delivery.saved import command_of
from services.config_delivery.tables import device_commands, device_config


@dataclass(frozen=True, slots=True)
class DeviceConfigView:
    device_id: str
    model: str | None
    clinic_id: str | None
    state: ConfigState | None
    desired_version: int
    desired_digest: str | None
    desired_settings: DeviceSettings | None
    desired_at: str | None
    reported_version: int
    reported_digest: str | None
    applied_at: str | None
    refused_version: int
    refused_reason: str | None
    refused_at: str | None
    decommissioned: bool


@dataclass(frozen=True, slots=True)
class Convergence:
    devices: int
    """Devices with a desired configuration (registered, not decommissioned)."""
    applied: int
    pending: int
    refused: int
    oldest_pending_since: str | None
    """When the oldest desired version still pending was decided."""

    @property
    def converged_pct(self) -> float:
        return 100.0 if not self.devices else round(100.0 * self.applied / self.devices, 1)


def device_config_view(connection: Connection, device_id: str) -> DeviceConfigView | None:
    row = connection.execute(
        select(device_config).where(device_config.c.device_id == device_id)
    ).first()
    return None if row is None else _view(row._mapping)


def list_device_configs(
    connection: Connection,
    *,
    clinic_ids: Sequence[str] | None = None,
    state: ConfigState | None = None,
    after: str | None = None,
    limit: int = 100,
) -> list[DeviceConfigView]:
    """Devices with a desired configuration, in id order (``clinic_ids``: only theirs)."""
    query = select(device_config).where(
        device_config.c.desired_version > 0, device_config.c.decommissioned.is_(False)
    )
    if clinic_ids is not None:
        query = query.where(device_config.c.clinic_id.in_(clinic_ids))
    if state is not None:
        query = query.where(device_config.c.state == state.value)
    if after is not None:
        query = query.where(device_config.c.device_id > after)
    query = query.order_by(device_config.c.device_id).limit(limit)
    return [_view(row._mapping) for row in connection.execute(query)]


def convergence(connection: Connection, clinic_id: str | None = None) -> Convergence:
    query = select(device_config.c.state, func.count(), func.min(device_config.c.desired_at)).where(
        device_config.c.desired_version > 0, device_config.c.decommissioned.is_(False)
    )
    if clinic_id is not None:
        query = query.where(device_config.c.clinic_id == clinic_id)
    counts: dict[str | None, int] = {}
    oldest: str | None = None
    for state, count, earliest in connection.execute(query.group_by(device_config.c.state)):
        counts[state] = count
        if state == ConfigState.PENDING.value:
            oldest = earliest
    return Convergence(
        devices=sum(counts.values()),
        applied=counts.get(ConfigState.APPLIED.value, 0),
        pending=counts.get(ConfigState.PENDING.value, 0),
        refused=counts.get(ConfigState.REFUSED.value, 0),
        oldest_pending_since=oldest,
    )


def list_commands(
    connection: Connection,
    device_id: str | None = None,
    *,
    state: str | None = None,
    limit: int = 100,
) -> list[Command]:
    """Commands newest first (of one device, or of every device)."""
    query = select(device_commands)
    if device_id is not None:
        query = query.where(device_commands.c.device_id == device_id)
    if state is not None:
        query = query.where(device_commands.c.state == state)
    query = query.order_by(device_commands.c.issued_at.desc(), device_commands.c.command_id)
    return [command_of(row._mapping) for row in connection.execute(query.limit(limit))]


def find_command(connection: Connection, device_id: str, command_id: str) -> Command | None:
    row = connection.execute(
        select(device_commands).where(
            device_commands.c.device_id == device_id, device_commands.c.command_id == command_id
        )
    ).first()
    return None if row is None else command_of(row._mapping)


def _view(row: Any) -> DeviceConfigView:
    settings = row["desired_settings"]
    state = row["state"]
    return DeviceConfigView(
        device_id=row["device_id"],
        model=row["model"],
        clinic_id=row["clinic_id"],
        state=None if state is None else ConfigState(state),
        desired_version=row["desired_version"],
        desired_digest=row["desired_digest"],
        desired_settings=None if settings is None else DeviceSettings.model_validate_json(settings),
        desired_at=row["desired_at"],
        reported_version=row["reported_version"],
        reported_digest=row["reported_digest"],
        applied_at=row["applied_at"],
        refused_version=row["refused_version"],
        refused_reason=row["refused_reason"],
        refused_at=row["refused_at"],
        decommissioned=bool(row["decommissioned"]),
    )
