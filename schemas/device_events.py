"""Events a handpiece reports (wire protocol v1, DESIGN §4, normative)."""

from collections.abc import Mapping
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, model_validator

from schemas.command_events import DEVICE_ANSWER_TYPES, DeviceAnswerModel
from schemas.envelope import EventEnvelope
from schemas.fields import (
    FROZEN_STRICT_SHAPE,
    Count,
    EventUuid,
    Identifier,
    LongText,
    PositiveCount,
    Real,
    ShortText,
    UtcTimestamp,
)
from schemas.interlock_events import INTERLOCK_EVENT_TYPES, InterlockEngaged, InterlockReleased
from schemas.validation import fields_rule


class TreatmentArea(StrEnum):
    LOWER_FACE = "lower_face"
    MID_FACE = "mid_face"
    NECK = "neck"
    SUBMENTAL = "submental"
    PERIORBITAL = "periorbital"
    UPPER_ARM = "upper_arm"
    INNER_THIGH = "inner_thigh"
    OTHER = "other"


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


class SessionEndReason(StrEnum):
    COMPLETED = "completed"
    ABORTED = "aborted"
    FAULT = "fault"


class CartridgeRemovalReason(StrEnum):
    WORN = "worn"
    SESSION_END = "session_end"
    FAULT = "fault"
    OTHER = "other"


class ResyncReason(StrEnum):
    STATE_LOST = "state_lost"
    BOARD_REPLACED = "board_replaced"
    OTHER = "other"


class _Data(BaseModel):
    model_config = FROZEN_STRICT_SHAPE


FaultCode = Annotated[str, Field(pattern=r"^E-[A-Z0-9][A-Z0-9-]{0,39}$")]


class AgentStartedData(_Data):
    firmware_version: ShortText
    agent_version: ShortText
    boot_id: ShortText


class CartridgeInstalledData(_Data):
    cartridge_id: Identifier
    lot: Identifier
    needles: Annotated[int, Field(strict=True, ge=1, le=16)]
    needle_gauge: Annotated[int, Field(strict=True, ge=18, le=34)]
    core_diameter_mm: Annotated[Real, Field(ge=0.1, le=2.0)]
    rated_actuations: PositiveCount


class SessionStartedData(_Data):
    session_id: EventUuid
    treatment_area: TreatmentArea
    area_cm2: Annotated[Real, Field(gt=0, le=2000)]
    operator_ref: Identifier
    cartridge_id: Identifier


def _window_in_order(data: Mapping[str, Any]) -> None:
    if data["window_end"] < data["window_start"]:
        raise ValueError("window_end is before window_start")


class CoresPunchedData(_Data):
    """``cores == actuations × needles`` needs the installed cartridge, so the
    projections check it against the stream; only local rules live here."""

    session_id: EventUuid
    cartridge_id: Identifier
    actuations: PositiveCount
    cores: Count
    depth_mm: Annotated[Real, Field(ge=0.1, le=5.0)]
    window_start: UtcTimestamp
    window_end: UtcTimestamp

    # Over the fields as a mapping: the gateway runs it on every punch it decodes.
    _window_is_ordered = model_validator(mode="after")(fields_rule(_window_in_order))


class NeedleWearData(_Data):
    cartridge_id: Identifier
    actuations_total: Count
    wear_pct: Annotated[Real, Field(ge=0, le=100)]
    insertion_force_n: Annotated[Real, Field(ge=0, le=1000)] | None


class FaultRaisedData(_Data):
    fault_code: FaultCode
    severity: Severity
    message: LongText


class FaultClearedData(_Data):
    fault_code: FaultCode


class SessionEndedData(_Data):
    session_id: EventUuid
    actuations_total: Count
    cores_total: Count
    duration_s: Annotated[Real, Field(ge=0)]
    reason: SessionEndReason


class CartridgeRemovedData(_Data):
    cartridge_id: Identifier
    actuations_total: Count
    reason: CartridgeRemovalReason


class AgentResyncedData(_Data):
    from_seq: Count
    """The platform's stored head this event continues after (DESIGN §4.2)."""
    reason: ResyncReason


class AgentStarted(EventEnvelope):
    type: Literal["agent.started"]
    data: AgentStartedData


class CartridgeInstalled(EventEnvelope):
    type: Literal["cartridge.installed"]
    data: CartridgeInstalledData


class SessionStarted(EventEnvelope):
    type: Literal["session.started"]
    data: SessionStartedData


class CoresPunched(EventEnvelope):
    type: Literal["cores.punched"]
    data: CoresPunchedData


class NeedleWear(EventEnvelope):
    type: Literal["needle.wear"]
    data: NeedleWearData


class FaultRaised(EventEnvelope):
    type: Literal["fault.raised"]
    data: FaultRaisedData


class FaultCleared(EventEnvelope):
    type: Literal["fault.cleared"]
    data: FaultClearedData


class SessionEnded(EventEnvelope):
    type: Literal["session.ended"]
    data: SessionEndedData


class CartridgeRemoved(EventEnvelope):
    type: Literal["cartridge.removed"]
    data: CartridgeRemovedData


class AgentResynced(EventEnvelope):
    type: Literal["agent.resynced"]
    data: AgentResyncedData


DeviceEventModel = (
    AgentStarted
    | CartridgeInstalled
    | SessionStarted
    | CoresPunched
    | NeedleWear
    | FaultRaised
    | FaultCleared
    | SessionEnded
    | CartridgeRemoved
    | AgentResynced
    | DeviceAnswerModel
    | InterlockEngaged
    | InterlockReleased
)
DeviceEvent = Annotated[DeviceEventModel, Field(discriminator="type")]

DEVICE_EVENT_TYPES = frozenset(
    {
        "agent.started",
        "cartridge.installed",
        "session.started",
        "cores.punched",
        "needle.wear",
        "fault.raised",
        "fault.cleared",
        "session.ended",
        "cartridge.removed",
        "agent.resynced",
        *DEVICE_ANSWER_TYPES,
        *INTERLOCK_EVENT_TYPES,
    }
)
