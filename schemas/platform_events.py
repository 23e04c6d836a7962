"""Events the platform itself records (registry, service visits, alerts, and the
changes people make: ``schemas.change_events``).

They share the device envelope and its hash chain, in streams of their own: the
registry stream of a device is ``registry:{device_id}``, an alert's is
``alert:{alert_id}``, a change's ``config:…`` or ``identity:…`` (see
``schemas.streams``).
"""

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, Field, model_validator

from schemas.change_events import ChangeEventModel
from schemas.command_events import CommandRecordModel
from schemas.device_events import Severity
from schemas.envelope import EventEnvelope
from schemas.fields import (
    FROZEN_STRICT_SHAPE,
    Author,
    ClinicId,
    Count,
    EventUuid,
    LongText,
    ShortText,
    UtcTimestamp,
)
from schemas.identity_events import IdentityEventModel
from schemas.seals import ED25519, KeyId, PublicKeyText, key_id_of, public_key_of_text


class AlertRule(StrEnum):
    NEEDLE_LIFE_LOW = "needle_life_low"
    NEEDLE_END_OF_LIFE = "needle_end_of_life"
    CARTRIDGE_OVERUSE = "cartridge_overuse"
    DEVICE_FAULT = "device_fault"
    DEVICE_OFFLINE = "device_offline"
    SESSION_COUNT_MISMATCH = "session_count_mismatch"
    COVERAGE_EXCEEDED = "coverage_exceeded"
    SERVICE_DUE = "service_due"
    INTEGRITY = "integrity"


class _Data(BaseModel):
    model_config = FROZEN_STRICT_SHAPE


ContextValue = str | int | float | bool | None


class DeviceRegisteredData(_Data):
    model: ShortText
    registered_by: Author


class DeviceAssignedData(_Data):
    clinic_id: ClinicId | None
    """``None`` takes the device back from its clinic."""
    assigned_by: Author


class DeviceServicedData(_Data):
    performed_by: Author
    notes: LongText
    actuations_at_service: Count | None


class DeviceKeyRegisteredData(_Data):
    """A seal key of the device (DESIGN §4.1): its batches must be sealed from now on."""

    key_id: KeyId
    public_key: PublicKeyText
    algorithm: Literal["ed25519"] = ED25519
    registered_by: Author

    @model_validator(mode="after")
    def _key_id_names_the_key(self) -> "DeviceKeyRegisteredData":
        if key_id_of(public_key_of_text(self.public_key)) != self.key_id:
            raise ValueError("key_id is not the id of public_key (first 8 bytes of its SHA-256)")
        return self


class DeviceKeyRevokedData(_Data):
    key_id: KeyId
    reason: LongText
    revoked_by: Author
    sealed_through: Count | None = None
    """The highest seq the key had sealed when the revocation was applied (0: none):
    its seals up to there stay valid, any later one is refused."""


class AlertRaisedData(_Data):
    alert_id: EventUuid
    rule: AlertRule
    subject: ShortText
    severity: Severity
    clinic_id: ClinicId | None
    message: LongText
    context: dict[str, ContextValue] = Field(default_factory=dict)
    device_time: UtcTimestamp | None = None
    """When the device says the condition began, where that differs from the event's
    ``occurred_at`` (the platform's receive time, the one clock alerts show)."""


class AlertEscalatedData(_Data):
    """An open alert climbing its ladder (DESIGN §8: the needle-life rules of one
    cartridge): the same alert, now under a higher rule and severity.  Its clinic and
    subject stay those of ``alert.raised``."""

    alert_id: EventUuid
    rule: AlertRule
    severity: Severity
    message: LongText
    context: dict[str, ContextValue] = Field(default_factory=dict)
    device_time: UtcTimestamp | None = None


class AlertAcknowledgedData(_Data):
    alert_id: EventUuid
    by: Author
    note: LongText | None


class AlertResolvedData(_Data):
    alert_id: EventUuid
    by: Author
    note: LongText | None


class DeviceRegistered(EventEnvelope):
    type: Literal["device.registered"]
    data: DeviceRegisteredData


class DeviceAssigned(EventEnvelope):
    type: Literal["device.assigned"]
    data: DeviceAssignedData


class DeviceServiced(EventEnvelope):
    type: Literal["device.serviced"]
    data: DeviceServicedData


class DeviceKeyRegistered(EventEnvelope):
    type: Literal["device.key_registered"]
    data: DeviceKeyRegisteredData


class DeviceKeyRevoked(EventEnvelope):
    type: Literal["device.key_revoked"]
    data: DeviceKeyRevokedData


class AlertRaised(EventEnvelope):
    type: Literal["alert.raised"]
    data: AlertRaisedData


class AlertEscalated(EventEnvelope):
    type: Literal["alert.escalated"]
    data: AlertEscalatedData


class AlertAcknowledged(EventEnvelope):
    type: Literal["alert.acknowledged"]
    data: AlertAcknowledgedData


class AlertResolved(EventEnvelope):
    type: Literal["alert.resolved"]
    data: AlertResolvedData


PlatformEventModel = (
    DeviceRegistered
    | DeviceAssigned
    | DeviceServiced
    | DeviceKeyRegistered
    | DeviceKeyRevoked
    | AlertRaised
    | AlertEscalated
    | AlertAcknowledged
    | AlertResolved
    | ChangeEventModel
    | IdentityEventModel
    | CommandRecordModel
)
PlatformEvent = Annotated[PlatformEventModel, Field(discriminator="type")]
