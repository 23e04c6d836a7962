"""What the configuration and command routes say (request and response bodies)."""

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.config_events import ConfigLayer
from schemas.device_config import DeviceSettings
from services.api.models import Accepted
from services.config_delivery.book import Command
from services.config_delivery.views import Convergence, DeviceConfigView


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class LayerOut(_Out):
    layer: ConfigLayer
    subject: str | None
    settings: dict[str, Any] = Field(description="Only the fields this layer sets.")
    changed_at: str | None
    changed_by: str | None
    recorded: Accepted | None = Field(
        None, description="The event this request recorded (null: the layer was so already)."
    )


class DesiredOut(_Out):
    version: int
    digest: str
    settings: DeviceSettings
    since: str | None = Field(description="When this version was decided.")


class ReportedOut(_Out):
    version: int
    digest: str | None
    applied_at: str | None


class RefusedOut(_Out):
    version: int
    reason: str | None
    at: str | None


class DeviceConfigOut(_Out):
    device_id: str
    model: str | None
    clinic_id: str | None
    state: Literal["applied", "pending", "refused"] | None = Field(
        description="applied: the device enforces the desired version; pending: not yet "
        "answered; refused: the device refused it and keeps what it had; null: nothing "
        "desired yet (not registered)."
    )
    desired: DesiredOut | None
    reported: ReportedOut | None
    refused: RefusedOut | None

    @classmethod
    def of(cls, view: DeviceConfigView) -> "DeviceConfigOut":
        desired = None
        if view.desired_settings is not None and view.desired_digest is not None:
            desired = DesiredOut(
                version=view.desired_version, digest=view.desired_digest,
                settings=view.desired_settings, since=view.desired_at,
            )  # fmt: skip
        reported = None
        if view.reported_version:
            reported = ReportedOut(
                version=view.reported_version, digest=view.reported_digest,
                applied_at=view.applied_at,
            )  # fmt: skip
        refused = None
        if view.refused_version or view.refused_reason:
            refused = RefusedOut(
                version=view.refused_version, reason=view.refused_reason, at=view.refused_at
            )
        return cls(
            device_id=view.device_id, model=view.model, clinic_id=view.clinic_id,
            state=None if view.state is None else view.state.value,
            desired=desired, reported=reported, refused=refused,
        )  # fmt: skip


class ConvergenceOut(_Out):
    devices: int = Field(description="Devices with a desired configuration.")
    applied: int = Field(description="At their desired version.")
    pending: int
    refused: int
    converged_pct: float
    oldest_pending_since: str | None

    @classmethod
    def of(cls, found: Convergence) -> "ConvergenceOut":
        return cls(
            devices=found.devices, applied=found.applied, pending=found.pending,
            refused=found.refused, converged_pct=found.converged_pct,
            oldest_pending_since=found.oldest_pending_since,
        )  # fmt: skip


class CommandIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cmd: str = Field(
        description="lock, unlock, reboot, resync, collect_diagnostics, resend, override_interlock",
        examples=["lock"],
        max_length=64,
    )
    args: dict[str, Any] = Field(
        default_factory=dict,
        description="lock: {reason}; resend: {from_seq, to_seq}; override_interlock: "
        "{interlock: cartridge_life|recalled_lot|service_overdue|locked, reason}; others: {}",
    )
    expires_in_s: int = Field(
        3600, description="How long the command may wait for the device (10 s to 7 days)."
    )


class CommandOut(_Out):
    command_id: str
    device_id: str
    cmd: str
    args: dict[str, Any]
    state: Literal["pending", "acknowledged", "rejected", "expired"]
    issued_by: str
    issued_at: str
    expires_at: str
    answered_at: str | None = None
    expired_at: str | None = None
    reason: str | None = Field(None, description="Why the device rejected it.")
    detail: str | None = None
    result: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def of(cls, command: Command) -> "CommandOut":
        return cls(
            command_id=command.command_id, device_id=command.device_id, cmd=command.cmd,
            args=command.args, state=command.state.value, issued_by=command.issued_by,
            issued_at=command.issued_at, expires_at=command.expires_at,
            answered_at=command.answered_at, expired_at=command.expired_at,
            reason=command.reason, detail=command.detail, result=command.result,
        )  # fmt: skip
