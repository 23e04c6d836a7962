"""The one discriminated union of every event type, and its decoders built once."""

from typing import Annotated, Final

from pydantic import Field, TypeAdapter

from schemas.change_events import (
    PolicyBoundsChanged,
    PolicyChanged,
    TokenCreated,
    TokenRevoked,
    UserCreated,
    UserDisabled,
    UserEnabled,
    UserPasswordReset,
    UserRoleChanged,
    WebhookCreated,
    WebhookDeleted,
    WebhookDisabled,
    WebhookEnabled,
    WebhookSecretRotated,
)
from schemas.device_events import (
    AgentResynced,
    AgentStarted,
    CartridgeInstalled,
    CartridgeRemoved,
    CoresPunched,
    DeviceEvent,
    FaultCleared,
    FaultRaised,
    NeedleWear,
    SessionEnded,
    SessionStarted,
)
from schemas.platform_events import (
    AlertAcknowledged,
    AlertRaised,
    AlertResolved,
    DeviceAssigned,
    DeviceRegistered,
    DeviceServiced,
)

Event = Annotated[
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
    | DeviceRegistered
    | DeviceAssigned
    | DeviceServiced
    | AlertRaised
    | AlertAcknowledged
    | AlertResolved
    | PolicyChanged
    | PolicyBoundsChanged
    | WebhookCreated
    | WebhookDeleted
    | WebhookDisabled
    | WebhookEnabled
    | WebhookSecretRotated
    | UserCreated
    | UserRoleChanged
    | UserDisabled
    | UserEnabled
    | UserPasswordReset
    | TokenCreated
    | TokenRevoked,
    Field(discriminator="type"),
]

EVENT_ADAPTER: Final[TypeAdapter[Event]] = TypeAdapter(Event)
"""Any event, device-sent or platform-recorded: what the store may hold."""

DEVICE_EVENT_ADAPTER: Final[TypeAdapter[DeviceEvent]] = TypeAdapter(DeviceEvent)
"""Only what a device may send: a platform event type on a device topic is a schema error."""
