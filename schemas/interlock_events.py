"""Safety interlocks a handpiece enforces on itself, as events in its own stream
(protocol v1.2, an extension of DESIGN §4: new types, the existing ones unchanged).

``interlock.engaged`` records that the handpiece refused something, or warned about
it, and why: a recalled cartridge lot refused at install (the install is then not
recorded: the cartridge never becomes current), a cartridge past its rated
actuations, service overdue, or a lock by command.  ``interlock.released`` records
that a blocking cause has gone and how.  Both are sealed and chained like every
other device event, so each refusal is as auditable as a punch.
"""

from enum import StrEnum
from typing import Literal, Self

from pydantic import BaseModel, model_validator

from schemas.device_config import InterlockMode
from schemas.envelope import EventEnvelope
from schemas.fields import FROZEN_STRICT_SHAPE, Identifier, LongText


class Interlock(StrEnum):
    """The causes a handpiece refuses or warns for."""

    CARTRIDGE_LIFE = "cartridge_life"
    """The installed cartridge has used up its rated actuations."""
    RECALLED_LOT = "recalled_lot"
    """The cartridge's lot is on the recalled list."""
    SERVICE_OVERDUE = "service_overdue"
    """The actuator's lifetime count reached ``service_due_at_actuations``."""
    LOCKED = "locked"
    """Locked by a ``lock`` command."""


class ReleaseCause(StrEnum):
    """How an interlock stopped holding."""

    CARTRIDGE_REMOVED = "cartridge_removed"
    SERVICED = "serviced"
    """A new configuration moved ``service_due_at_actuations`` past the count."""
    UNLOCKED = "unlocked"
    OVERRIDE = "override"
    """A manufacturer's ``override_interlock`` command (its author is in the command
    and in the platform's ``command.issued``)."""
    CONFIG = "config"
    """A new configuration no longer asks for it (a lot taken off the recall list,
    a mode changed from ``block`` to ``warn``)."""


class _Data(BaseModel):
    model_config = FROZEN_STRICT_SHAPE


CARTRIDGE_INTERLOCKS = frozenset({Interlock.CARTRIDGE_LIFE, Interlock.RECALLED_LOT})
"""Interlocks about one cartridge: they name it, and its removal releases them."""


class InterlockEngagedData(_Data):
    interlock: Interlock
    mode: InterlockMode
    """``warn``: recorded, punching went on; ``block``: refused."""
    cartridge_id: Identifier | None
    lot: Identifier | None
    reason: LongText

    @model_validator(mode="after")
    def _cartridge_causes_name_it(self) -> Self:
        if self.interlock in CARTRIDGE_INTERLOCKS and self.cartridge_id is None:
            raise ValueError(f"a {self.interlock.value} interlock names its cartridge_id")
        if self.interlock is Interlock.RECALLED_LOT and self.lot is None:
            raise ValueError("a recalled_lot interlock names the lot")
        if self.interlock is Interlock.LOCKED and self.mode is InterlockMode.WARN:
            raise ValueError("a lock always blocks")
        return self


class InterlockReleasedData(_Data):
    interlock: Interlock
    by: ReleaseCause


class InterlockEngaged(EventEnvelope):
    type: Literal["interlock.engaged"]
    data: InterlockEngagedData


class InterlockReleased(EventEnvelope):
    type: Literal["interlock.released"]
    data: InterlockReleasedData


INTERLOCK_EVENT_TYPES = frozenset({"interlock.engaged", "interlock.released"})
