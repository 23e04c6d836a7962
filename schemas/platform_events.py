"""Events the platform itself records (registry, service visits, alerts, and the
changes people make: ``schemas.change_events``).

They share the device envelope and its hash chain, in streams of their own: the
registry stream of a device is ``registry:{device_id}``, an alert's is
``alert:{alert_id}``, a change's ``config:…`` or ``identity:…`` (see
``schemas.streams``).
"""

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, Field

from schemas.change_events import ChangeEventModel
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
)


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


class AlertRaisedData(_Data):
    alert_id: EventUuid
    rule: AlertRule
    subject: ShortText
    severity: Severity
    clinic_id: ClinicId | None
    message: LongText
    context: dict[str, ContextValue] = Field(default_factory=dict)


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


class AlertRaised(EventEnvelope):
    type: Literal["alert.raised"]
    data: AlertRaisedData


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
    | AlertRaised
    | AlertAcknowledged
    | AlertResolved
    | ChangeEventModel
)
PlatformEvent = Annotated[PlatformEventModel, Field(discriminator="type")]
