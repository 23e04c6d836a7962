"""What the API says: response and request bodies, documented in the OpenAPI."""

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.fields import ClinicId, DeviceId

DeviceStatus = Literal[
    "ok", "cartridge_low", "cartridge_exhausted", "fault", "service_due", "offline", "integrity"
]
ChainStatusName = Literal["verified", "broken", "incomplete"]


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class CartridgeOut(_Out):
    cartridge_id: str
    lot: str
    needles: int
    needle_gauge: int
    core_diameter_mm: float
    rated_actuations: int
    installed_at: datetime
    actuations: int
    wear_pct: float | None
    life_used_pct: float = Field(description="max(actuations / rated, wear_pct / 100) × 100")


class ForecastOut(_Out):
    actuations_left: int
    actuations_per_minute: float | None
    minutes_left: float | None


class FaultOut(_Out):
    fault_code: str
    severity: str
    message: str
    raised_at: datetime


class ActiveInterlockOut(_Out):
    interlock: Literal["cartridge_life", "recalled_lot", "service_overdue", "locked"]
    mode: Literal["warn", "block"]
    reason: str
    since: datetime
    since_seq: int = Field(description="The seq of the device's `interlock.engaged`.")
    cartridge_id: str | None
    lot: str | None


class RefusedInstallOut(_Out):
    cartridge_id: str
    lot: str
    at: datetime
    seq: int


class InterlocksOut(_Out):
    """What the handpiece's safety interlocks recorded (docs/safety-interlocks.md)."""

    locked: bool = Field(
        description="No session may start: locked by command, or service overdue under block."
    )
    blocking: bool = Field(description="Some interlock in `block` mode holds now.")
    active: list[ActiveInterlockOut]
    refusals: int = Field(description="`block` engagements recorded, refused installs included.")
    warnings: int = Field(description="`warn` engagements recorded.")
    last_refused_install: RefusedInstallOut | None


class DeviceOut(_Out):
    device_id: str
    clinic_id: str | None
    model: str | None
    registered: bool
    serial: str | None = Field(default=None, description="The serial it enrolled with.")
    status: DeviceStatus
    online: bool | None = Field(description="From the device's MQTT status; null: never heard.")
    last_seen: datetime | None
    firmware_version: str | None
    cartridge_life_used_pct: float | None
    open_faults: int


class DeviceDetail(DeviceOut):
    agent_version: str | None
    attention: list[DeviceStatus]
    chain_status: ChainStatusName
    cartridge: CartridgeOut | None
    forecast: ForecastOut | None
    lifetime_actuations: int
    lifetime_cores: int
    lifetime_sessions: int
    actuations_since_service: int
    last_serviced_at: datetime | None
    faults: list[FaultOut]
    open_session_id: str | None
    integrity_alerts: list[str] = Field(
        description="Open integrity incidents over events the store refused (alert ids): "
        "the status is `integrity` until a person resolves each."
    )
    clock_skew_events: int = Field(
        description="Events whose device time is implausible (before 2020 or over 24 h "
        "after the platform received them); times shown here use the receive time instead."
    )
    last_clock_skew_seq: int | None
    actuations_at_service: int = Field(
        0, description="The actuator's lifetime count at the last service visit (0: never)."
    )
    interlocks: InterlocksOut | None = Field(
        None, description="Null for rows folded before interlocks existed (until a replay)."
    )


class UsageDay(_Out):
    day: str
    sessions: int
    cores: int


SealStatusName = Literal["signed", "unsigned"]


class EventOut(_Out):
    seq: int
    event_id: str
    type: str
    occurred_at: datetime = Field(description="As a time; `event` has the hashed text.")
    received_at: datetime = Field(description="When the platform received it (not hashed).")
    hash: str
    prev_hash: str
    data: dict[str, Any]
    event: dict[str, Any] = Field(
        description="The stored event verbatim, `hash` included: SHA-256 of the RFC 8785 "
        "canonical JSON of this object without `hash` is `hash`."
    )


class SessionOut(_Out):
    session_id: str
    device_id: str
    clinic_id: str | None
    treatment_area: str
    area_cm2: float
    started_at: datetime
    ended_at: datetime | None
    cores_counted: int
    cores_reported: int | None
    reconciled: bool | None = Field(description="null while pending (not ended yet)")
    coverage_pct: float
    chain_status: ChainStatusName


class SessionCartridge(_Out):
    cartridge_id: str
    actuations: int
    cores: int
    core_diameter_mm: float | None = Field(
        default=None, description="From its `cartridge.installed`; null if none is stored."
    )


class SessionDetail(SessionOut):
    end_reason: str | None
    actuations_counted: int
    actuations_reported: int | None
    first_seq: int = Field(description="The seq of its `session.started`.")
    last_seq: int | None = Field(description="The seq of its `session.ended`; null while open.")
    first_hash: str | None = Field(description="The stored hash of `first_seq`.")
    last_hash: str | None = Field(description="The stored hash of `last_seq`.")
    seal_status: SealStatusName | None = Field(
        description="`signed`: a stored device seal covers `last_seq`; null while the "
        "session is open or where the platform keeps no seals."
    )
    cartridges: list[SessionCartridge]
    events: list[EventOut]


class AlertOut(_Out):
    alert_id: str
    device_id: str
    clinic_id: str | None
    rule: str
    subject: str
    severity: str
    status: Literal["open", "acknowledged", "resolved"]
    message: str
    context: dict[str, Any]
    raised_at: datetime
    """The platform's receive time of what raised it: every time an alert shows is on
    that one clock (DESIGN §8)."""
    device_time: datetime | None = None
    """What the device's clock said for the raise, where it differs from ``raised_at``."""
    escalated_at: datetime | None = None
    """When it last climbed a rung of the needle-life ladder (``rule`` is the rung)."""
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    resolved_at: datetime | None
    resolved_by: str | None
    note: str | None


class AlertStep(_Out):
    """One step of an alert's history: its raise, each rung it climbed, each
    acknowledgement, its resolution."""

    kind: Literal["raised", "escalated", "acknowledged", "resolved"]
    at: datetime
    """The platform's receive time."""
    device_time: datetime | None
    rule: str | None
    severity: str | None
    by: str | None
    note: str | None
    from_alert_id: str
    """The alert whose stream holds the step: this one, or, for a store written before
    the needle-life ladder, a parallel alert of the same cartridge merged into it."""


class AlertDetail(AlertOut):
    history: list[AlertStep]


class Accepted(_Out):
    """The change is recorded as an event; read models show it once projected."""

    stream_id: str
    seq: int
    event_id: str
    type: str


class CountBy(_Out):
    key: str | None
    count: int


class CartridgeWeek(_Out):
    clinic_id: str | None
    week: str
    installed: int


class FleetOverview(_Out):
    devices: int
    by_status: list[CountBy]
    by_firmware: list[CountBy]
    by_clinic: list[CountBy]
    open_alerts: int
    cartridges_per_week: list[CartridgeWeek]
    locked_devices: int = Field(
        0, description="Devices no session may start on (locked, or service overdue under block)."
    )
    blocked_devices: int = Field(0, description="Devices with an interlock in `block` now.")
    interlock_refusals: int = Field(
        0, description="`block` interlock engagements the devices recorded, in total."
    )
    interlock_warnings: int = Field(0, description="`warn` interlock engagements, in total.")


class DeadLetterOut(_Out):
    id: int
    received_at: datetime
    topic: str
    reason: str
    detail: str
    device_id: str | None
    seq: int | None
    raw_size: int
    raw_preview: str = Field(description="The first 1 KiB of the refused bytes, as text.")


class FindingOut(_Out):
    defect: str
    seq: int
    event_id: str
    detail: str


class VerificationOut(_Out):
    device_id: str
    session_id: str | None
    status: ChainStatusName
    events_checked: int
    findings: list[FindingOut]


class WebhookOut(_Out):
    id: str
    clinic_id: str
    url: str
    secret_version: int
    created_at: datetime
    active: bool


class WebhookSecret(_Out):
    id: str
    secret: str = Field(description="Shown this once; HMAC-SHA256 key of the signatures.")


class PolicyOut(_Out):
    clinic_id: str
    overrides: dict[str, Any]
    effective: dict[str, Any]


# -- requests --------------------------------------------------------------


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RegisterDevice(_In):
    device_id: DeviceId
    model: str = Field(min_length=1, max_length=64, description="As recorded on device.registered.")
    clinic_id: ClinicId | None = None


class AssignDevice(_In):
    clinic_id: ClinicId | None = Field(description="null takes the device back from its clinic.")


class RecordService(_In):
    notes: str = Field(default="", max_length=2000)
    actuations_at_service: int | None = Field(default=None, ge=0)


class AlertNote(_In):
    note: str | None = Field(default=None, max_length=2000)


class NewWebhook(_In):
    url: str = Field(min_length=8, max_length=2000, examples=["https://clinic.example/alerts"])


class WebhookChange(_In):
    active: bool = Field(description="false switches the webhook off, true on again.")


class DeliveryOut(_Out):
    """One alert notice to one webhook: its attempts so far."""

    webhook_id: str
    event_id: str
    state: str
    attempts: int
    last_status: int | None
    last_error: str | None
    delivered_at: datetime | None


class EmailDeliveryOut(_Out):
    """One alert notice e-mailed to one person: its attempts so far (the address is
    not shown: the person is named by their user id)."""

    user_id: str
    event_id: str
    state: str
    attempts: int
    last_error: str | None
    delivered_at: datetime | None


# -- the audit log and the manufacturer's policy bounds ----------------------


class AuditEntryOut(_Out):
    """One change a person made, as recorded (never a secret: none is recorded)."""

    time: datetime = Field(description="When the platform recorded it.")
    kind: str = Field(examples=["policy.changed"])
    author: str
    subject: str = Field(
        description="What changed: `fleet`, `clinic:{id}`, `user:{id}` or `token:{id}`.",
        examples=["clinic:clinic-7"],
    )
    clinic_id: str | None
    stream_id: str
    seq: int
    event_id: str
    data: dict[str, Any]


class PolicyBoundIn(_In):
    min: float | None = Field(default=None, allow_inf_nan=False)
    max: float | None = Field(default=None, allow_inf_nan=False)


class PolicyBoundOut(_Out):
    min: float | None
    max: float | None


class PolicyBoundsOut(_Out):
    bounds: dict[str, PolicyBoundOut] = Field(
        description="Per policy key, the range a clinic's override must stay within."
    )
    set_by_manufacturer: dict[str, PolicyBoundOut] = Field(
        description="The part the manufacturer set; the rest are the platform's defaults."
    )
