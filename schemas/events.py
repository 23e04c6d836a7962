"""The one discriminated union of every event type, and its decoders built once."""

from typing import Annotated, Final

from pydantic import Field, TypeAdapter

from schemas.device_events import DeviceEvent, DeviceEventModel
from schemas.platform_events import PlatformEventModel

Event = Annotated[DeviceEventModel | PlatformEventModel, Field(discriminator="type")]

EVENT_ADAPTER: Final[TypeAdapter[Event]] = TypeAdapter(Event)
"""Any event, device-sent or platform-recorded: what the store may hold."""

DEVICE_EVENT_ADAPTER: Final[TypeAdapter[DeviceEvent]] = TypeAdapter(DeviceEvent)
"""Only what a device may send: a platform event type on a device topic is a schema error."""
