"""What a handpiece's safety interlocks did, folded from its own ``interlock.*``
events (``schemas.interlock_events``): the interlocks engaged now, with their reason
and since when, whether the handpiece is locked, and how many refusals and warnings
it has recorded.

The handpiece decides (``edge_agent.interlocks``); this fold only reads what it
recorded, so what the platform shows is exactly what the device's sealed chain says.
A ``recalled_lot`` engagement that names a cartridge other than the installed one (by
id and lot) is a cartridge refused at install: a refusal counted, never an active
interlock (the cartridge never became current).  Pure: part of the device fold, in
seq order.
"""

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

LOCKING: Final = frozenset({"locked", "service_overdue"})
"""Causes that, blocking, stop any session from starting: the handpiece is locked."""
BLOCK: Final = "block"


@dataclass(frozen=True, slots=True)
class ActiveInterlock:
    interlock: str
    mode: str
    reason: str
    since: datetime
    """The device time of the engagement (its receive time when that clock is skewed)."""
    since_seq: int
    cartridge_id: str | None
    lot: str | None


@dataclass(frozen=True, slots=True)
class RefusedInstall:
    cartridge_id: str
    lot: str
    at: datetime
    seq: int


@dataclass(frozen=True, slots=True)
class InterlockSummary:
    """The interlock part of the device read model."""

    locked: bool
    """No session may start: locked by command, or service overdue under ``block``."""
    blocking: bool
    """Some interlock blocks now (a lock, or the cartridge: spent under ``block`` or
    recalled)."""
    active: tuple[ActiveInterlock, ...]
    """Engaged and not released, oldest first."""
    refusals: int
    """``block`` engagements the device recorded, refused installs included."""
    warnings: int
    """``warn`` engagements the device recorded."""
    last_refused_install: RefusedInstall | None


@dataclass(slots=True)
class InterlockTally:
    """The fold's mutable state; read it through ``summary``."""

    active: dict[str, ActiveInterlock] = field(default_factory=dict)
    refusals: int = 0
    warnings: int = 0
    last_refused_install: RefusedInstall | None = None

    def engaged(
        self,
        data: dict[str, Any],
        at: datetime,
        seq: int,
        installed: tuple[str, str] | None,
    ) -> None:
        """An ``interlock.engaged``; ``installed``: the id and lot of the cartridge
        installed when it was recorded."""
        interlock, mode = data["interlock"], data["mode"]
        if mode == BLOCK:
            self.refusals += 1
        else:
            self.warnings += 1
        cartridge_id = data.get("cartridge_id")
        if interlock == "recalled_lot" and installed != (cartridge_id, data.get("lot")):
            refused = RefusedInstall(str(cartridge_id), str(data.get("lot")), at, seq)
            self.last_refused_install = refused
            return
        self.active.pop(interlock, None)  # engaged anew: it moves to the end
        self.active[interlock] = ActiveInterlock(
            interlock, mode, data["reason"], at, seq, cartridge_id, data.get("lot")
        )

    def released(self, data: dict[str, Any]) -> None:
        self.active.pop(data["interlock"], None)

    def summary(self) -> InterlockSummary:
        active = tuple(self.active.values())
        blocking = [held for held in active if held.mode == BLOCK]
        return InterlockSummary(
            locked=any(held.interlock in LOCKING for held in blocking),
            blocking=bool(blocking),
            active=active,
            refusals=self.refusals,
            warnings=self.warnings,
            last_refused_install=self.last_refused_install,
        )


NO_INTERLOCKS: Final = InterlockTally().summary()
