"""Session audits: what a treatment session did, and whether the device's own totals
agree with it (DESIGN §6, the auditor's read model).

The fold applies a device's events strictly in ``seq`` order, so when
``session.ended`` is applied every event before it, every punch of the session
among them, has been applied: reconciliation is decided right then and never
revised by a late event.
"""

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from schemas import ChainStatus

LIST_SEPARATOR: Final = ";"
"""Between the cartridges of a session that used several, and their diameters, in the
CSV export's cells."""


@dataclass(frozen=True, slots=True)
class SessionAudit:
    """The read model of one session."""

    session_id: str
    device_id: str
    treatment_area: str
    area_cm2: float
    operator_ref: str
    started_at: datetime
    started_seq: int
    ended_at: datetime | None
    ended_seq: int | None
    end_reason: str | None
    cartridge_ids: tuple[str, ...]
    """Every cartridge the session used, in order of first use."""
    actuations_counted: int
    cores_counted: int
    """Sums of the session's ``cores.punched`` events."""
    actuations_reported: int | None
    cores_reported: int | None
    """The device's own totals from ``session.ended``; ``None`` until it ends."""
    reconciled: bool | None
    """Counted cores equal reported cores; ``None`` (pending) until the session ends."""
    coverage_pct: float
    """Σ cores × π(d/2)² / (area_cm2 × 100 mm²) × 100, d from each punch's cartridge."""
    chain_status: ChainStatus
    """``verified``: linked event to event from start through end; ``broken``: a link
    inside the session fails; ``incomplete``: not ended yet (which, the fold being in
    seq order, covers waiting behind a gap)."""
    lot: str | None = None
    """The lot of the cartridge the session started with (``cartridge_ids[0]``), from
    its ``cartridge.installed``; ``None`` when the fold knows no such install."""
    core_diameters_mm: tuple[float | None, ...] = ()
    """By ``cartridge_ids``: the core diameter of the cartridge's newest
    ``cartridge.installed`` the fold had seen when the session began using it (the one
    its coverage counts with); ``None`` when it knows no such install."""
    ended_hash: str | None = None
    """The stored hash of ``session.ended`` (what an auditor checks the chain against);
    ``None`` until it ends."""

    @property
    def cartridges_cell(self) -> str | None:
        """``cartridge_ids`` as the CSV export prints them; ``None`` for none."""
        return LIST_SEPARATOR.join(self.cartridge_ids) or None

    @property
    def core_diameters_cell(self) -> str | None:
        """``core_diameters_mm`` as the CSV export prints them (Python's ``repr``, an
        empty place for an unknown one); ``None`` when the row would be empty."""
        cells = ("" if diameter is None else repr(diameter) for diameter in self.core_diameters_mm)
        return LIST_SEPARATOR.join(cells) or None


@dataclass(slots=True)
class SessionTally:
    """A session as the fold keeps it (mutable: owned by one ``DeviceProjection``)."""

    session_id: str
    treatment_area: str
    area_cm2: float
    operator_ref: str
    started_at: datetime
    started_seq: int
    cartridge_ids: list[str] = field(default_factory=list)
    actuations_counted: int = 0
    cores_counted: int = 0
    cored_mm2: float = 0.0
    """Skin removed: Σ cores × π(d/2)² in mm²."""
    ended_at: datetime | None = None
    ended_seq: int | None = None
    end_reason: str | None = None
    actuations_reported: int | None = None
    cores_reported: int | None = None
    chain_broken: bool = False
    lot: str | None = None
    """The lot of the cartridge the session started with, if the fold knows it."""
    core_diameters_mm: list[float | None] = field(default_factory=list)
    """By ``cartridge_ids``, see ``SessionAudit.core_diameters_mm``."""
    ended_hash: str | None = None

    @classmethod
    def from_started(cls, data: dict[str, Any], started_at: datetime, seq: int) -> "SessionTally":
        return cls(
            session_id=data["session_id"],
            treatment_area=data["treatment_area"],
            area_cm2=data["area_cm2"],
            operator_ref=data["operator_ref"],
            started_at=started_at,
            started_seq=seq,
            cartridge_ids=[data["cartridge_id"]],
            core_diameters_mm=[None],  # the fold sets what it knows of the install
        )

    def use_cartridge(self, cartridge_id: str, core_diameter_mm: float | None) -> None:
        """A cartridge the session names (its first, or one swapped in), with the
        diameter of its newest install so far; a cartridge used before keeps its own."""
        if cartridge_id not in self.cartridge_ids:
            self.cartridge_ids.append(cartridge_id)
            self.core_diameters_mm.append(core_diameter_mm)

    def end(self, data: dict[str, Any], ended_at: datetime, seq: int, event_hash: str) -> None:
        self.ended_at = ended_at
        self.ended_seq = seq
        self.ended_hash = event_hash
        self.end_reason = data["reason"]
        self.actuations_reported = data["actuations_total"]
        self.cores_reported = data["cores_total"]

    @property
    def reconciled(self) -> bool | None:
        if self.cores_reported is None:
            return None
        return self.cores_counted == self.cores_reported

    @property
    def coverage_pct(self) -> float:
        # cored_mm2 / (area_cm2 × 100 mm²/cm²) × 100 %: the hundreds cancel.
        return self.cored_mm2 / self.area_cm2

    @property
    def chain_status(self) -> ChainStatus:
        if self.chain_broken:
            return ChainStatus.BROKEN
        return ChainStatus.INCOMPLETE if self.ended_seq is None else ChainStatus.VERIFIED

    def audit(self, device_id: str) -> SessionAudit:
        return SessionAudit(
            session_id=self.session_id,
            device_id=device_id,
            treatment_area=self.treatment_area,
            area_cm2=self.area_cm2,
            operator_ref=self.operator_ref,
            started_at=self.started_at,
            started_seq=self.started_seq,
            ended_at=self.ended_at,
            ended_seq=self.ended_seq,
            end_reason=self.end_reason,
            cartridge_ids=tuple(self.cartridge_ids),
            actuations_counted=self.actuations_counted,
            cores_counted=self.cores_counted,
            actuations_reported=self.actuations_reported,
            cores_reported=self.cores_reported,
            reconciled=self.reconciled,
            coverage_pct=self.coverage_pct,
            chain_status=self.chain_status,
            lot=self.lot,
            core_diameters_mm=tuple(self.core_diameters_mm),
            ended_hash=self.ended_hash,
        )
