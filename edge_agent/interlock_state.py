"""What a handpiece's interlocks remember between decisions, and how it is kept.

The state is a fold of the events the handpiece recorded (installs, removals,
punches, its own ``interlock.*`` events) under the settings it holds, so an agent
that restarts restores it from the snapshot kept with its last recorded event plus
whatever was recorded after it (``to_json`` / ``from_json``; the agent keeps it in
its outbox).  Pure: no I/O, no clock.
"""

from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from schemas.device_config import InterlockMode
from schemas.interlock_events import Interlock

RECENT_CARTRIDGES: Final = 8
"""Cartridges remembered after removal, so one put back resumes its count instead of
starting a worn cartridge at zero."""
REFUSED_MEMORY: Final = 32
"""Refused cartridges remembered, so trying one again is refused without recording
the same refusal twice."""


@dataclass(slots=True)
class CartridgeInUse:
    cartridge_id: str
    lot: str
    rated_actuations: int
    actuations: int = 0

    @property
    def spent(self) -> bool:
        """Its rated actuations are used up: the next actuation would be past them."""
        return self.actuations >= self.rated_actuations

    @property
    def actuations_left(self) -> int:
        return max(self.rated_actuations - self.actuations, 0)


@dataclass(frozen=True, slots=True)
class Engagement:
    """An interlock the handpiece recorded as engaged and has not released."""

    mode: InterlockMode
    subject: str | None
    """What it is about: the cartridge id (cartridge causes), the service-due count
    (service overdue), ``None`` (a lock)."""


@dataclass(slots=True)
class InterlockState:
    cartridge: CartridgeInUse | None = None
    lifetime_actuations: int = 0
    engaged: dict[Interlock, Engagement] = field(default_factory=dict)
    overridden: dict[Interlock, str | None] = field(default_factory=dict)
    """Causes a manufacturer overrode, with the subject the override was for: it
    holds until the subject changes (another cartridge, another service-due count)."""
    recent: dict[str, CartridgeInUse] = field(default_factory=dict)
    refused: list[tuple[str, str]] = field(default_factory=list)
    """Cartridges refused at install (a recalled lot), as (id, lot), oldest first."""

    @property
    def locked(self) -> bool:
        return Interlock.LOCKED in self.engaged

    def remember_removed(self, cartridge: CartridgeInUse) -> None:
        self.recent.pop(cartridge.cartridge_id, None)
        self.recent[cartridge.cartridge_id] = cartridge
        while len(self.recent) > RECENT_CARTRIDGES:
            del self.recent[next(iter(self.recent))]

    def remember_refused(self, cartridge_id: str, lot: str) -> None:
        if (cartridge_id, lot) not in self.refused:
            self.refused.append((cartridge_id, lot))
            del self.refused[:-REFUSED_MEMORY]

    # -- keeping it

    def to_json(self) -> bytes:
        return orjson.dumps(
            {
                "cartridge": None if self.cartridge is None else _cartridge(self.cartridge),
                "lifetime_actuations": self.lifetime_actuations,
                "engaged": {
                    cause.value: {"mode": held.mode.value, "subject": held.subject}
                    for cause, held in self.engaged.items()
                },
                "overridden": {cause.value: subject for cause, subject in self.overridden.items()},
                "recent": [_cartridge(cartridge) for cartridge in self.recent.values()],
                "refused": self.refused,
            }
        )

    @classmethod
    def from_json(cls, text: bytes) -> "InterlockState":
        """The state ``to_json`` wrote; raises ``ValueError`` for anything else."""
        try:
            kept = orjson.loads(text)
            return cls(
                cartridge=None
                if kept["cartridge"] is None
                else CartridgeInUse(**kept["cartridge"]),
                lifetime_actuations=int(kept["lifetime_actuations"]),
                engaged={
                    Interlock(cause): Engagement(InterlockMode(held["mode"]), held["subject"])
                    for cause, held in kept["engaged"].items()
                },
                overridden={
                    Interlock(cause): subject for cause, subject in kept["overridden"].items()
                },
                recent={item["cartridge_id"]: CartridgeInUse(**item) for item in kept["recent"]},
                refused=[(str(key), str(lot)) for key, lot in kept["refused"]],
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError) as error:
            raise ValueError(f"not a kept interlock state: {error!r}") from None


def _cartridge(cartridge: CartridgeInUse) -> dict[str, Any]:
    return {
        "cartridge_id": cartridge.cartridge_id,
        "lot": cartridge.lot,
        "rated_actuations": cartridge.rated_actuations,
        "actuations": cartridge.actuations,
    }
