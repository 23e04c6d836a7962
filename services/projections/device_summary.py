"""The device read model: one immutable row per handpiece (DESIGN §6)."""

from dataclasses import dataclass
from datetime import datetime

from schemas import ChainStatus
from services.projections.cartridge import InstalledCartridge
from services.projections.faults import OpenFault
from services.projections.forecast import NeedleLifeForecast
from services.projections.interlocks import NO_INTERLOCKS, InterlockSummary
from services.projections.maintenance import MaintenanceStatus


@dataclass(frozen=True, slots=True)
class DeviceSummary:
    device_id: str
    firmware_version: str | None
    agent_version: str | None
    last_occurred_at: datetime | None
    """Latest device-clock time of any event seen whose time is plausible (see
    ``facts.clock_skewed``: a skewed one is counted in ``clock_skew_events`` instead)."""
    last_received_at: datetime | None
    """Latest time the platform stored any of its events."""
    clock_skew_events: int
    """Events folded whose device time is implausible (stored as reported; every time
    the read models take from them is the platform's receive time)."""
    last_clock_skew_seq: int | None
    """The latest of those events."""
    applied_through: int
    """Every event up to this seq is folded in; nothing after it is."""
    last_hash: str
    chain_status: ChainStatus
    """``broken`` once any link failed, else ``incomplete`` while events wait behind a
    gap, else ``verified``."""
    chain_broken_at: int | None
    waiting_for_seq: int | None
    """The missing seq that later events wait behind; ``None`` when nothing waits."""
    cartridge: InstalledCartridge | None
    forecast: NeedleLifeForecast | None
    lifetime_actuations: int
    lifetime_cores: int
    lifetime_sessions: int
    actuations_since_service: int
    last_serviced_at: datetime | None
    open_faults: tuple[OpenFault, ...]
    """By fault code."""
    open_session_id: str | None
    online: bool | None
    """As given by the caller (presence and a clock live outside the fold)."""
    status: MaintenanceStatus
    """The most urgent of ``attention``, ``ok`` when it is empty."""
    attention: tuple[MaintenanceStatus, ...]
    """Every status that applies, most urgent first."""
    integrity_alerts: tuple[str, ...]
    """Open integrity incidents over events the store refused (their alert ids): while
    there is one the status is ``integrity``, until a person resolves it."""
    interlocks: InterlockSummary = NO_INTERLOCKS
    """The handpiece's safety interlocks: locked or not, what is engaged, refusals."""
    actuations_at_service: int = 0
    """The actuator's lifetime count at the last service visit: where the service
    interval of the device's desired configuration counts from."""

    @property
    def last_seen(self) -> datetime | None:
        """When the device was last heard from: the platform's clock when it stored an
        event, else (facts that never went through a store) the device's."""
        return self.last_received_at or self.last_occurred_at
