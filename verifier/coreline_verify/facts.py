"""Each treatment session's figures, recomputed from the events alone (DESIGN §6):
cores counted, cores reported, reconciliation and coverage.

The rules are the platform's session audit, restated: a ``cores.punched`` counts
toward the session it names when that session is the open one; its skin area is
cores × π(d/2)² with d the core diameter of the cartridge it names (one of the
device's last eight installed, else the one installed); ``session.ended`` of the
open session gives the device's own total; coverage % = mm² cored ÷ area_cm2 (the
hundreds of mm²/cm² and of percent cancel).
"""

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final

RECENT_CARTRIDGES: Final = 8
"""How many installed cartridges a punch may name, as the platform's fold keeps."""


@dataclass(slots=True)
class SessionFacts:
    device_id: str
    session_id: str
    area_cm2: float
    started_seq: int
    cores_counted: int = 0
    cored_mm2: float = 0.0
    cores_reported: int | None = None

    @property
    def reconciled(self) -> bool | None:
        if self.cores_reported is None:
            return None
        return self.cores_counted == self.cores_reported

    @property
    def coverage_pct(self) -> float:
        return self.cored_mm2 / self.area_cm2

    def describe(self) -> str:
        reported = "-" if self.cores_reported is None else str(self.cores_reported)
        reconciled = {None: "pending", True: "yes", False: "no"}[self.reconciled]
        return (
            f"{self.device_id} session {self.session_id}: cores counted "
            f"{self.cores_counted}, reported {reported}, reconciled {reconciled}, "
            f"coverage {self.coverage_pct:.4f}%"
        )


class SessionFold:
    """Folds one device's events in seq order; hands each session to ``on_done``
    when it ends (and the open one when the stream ends)."""

    def __init__(self, device_id: str, on_done: Callable[[SessionFacts], None]) -> None:
        self._device_id = device_id
        self._on_done = on_done
        self._installed: str | None = None
        self._core_area_mm2: dict[str, float] = {}
        """π(d/2)² of the last installed cartridges, least recently installed first."""
        self._open: SessionFacts | None = None

    def apply(self, event_type: str, seq: int, data: Any) -> None:
        fold = _FOLDS.get(event_type)
        if fold is not None and isinstance(data, dict):
            fold(self, seq, data)

    def finish(self) -> None:
        if self._open is not None:
            self._on_done(self._open)
            self._open = None

    def _cartridge_installed(self, seq: int, data: dict[str, Any]) -> None:
        named = data["cartridge_id"]
        areas = self._core_area_mm2
        areas.pop(named, None)
        areas[named] = math.pi * (data["core_diameter_mm"] / 2) ** 2
        if len(areas) > RECENT_CARTRIDGES:
            del areas[next(iter(areas))]
        self._installed = named

    def _cartridge_removed(self, seq: int, data: dict[str, Any]) -> None:
        if data["cartridge_id"] == self._installed:
            self._installed = None

    def _session_started(self, seq: int, data: dict[str, Any]) -> None:
        # A session started while another is open leaves the other unended, as the
        # platform's fold does: it is reported as pending.
        if self._open is not None:
            self._on_done(self._open)
        self._open = SessionFacts(self._device_id, data["session_id"], data["area_cm2"], seq)

    def _cores_punched(self, seq: int, data: dict[str, Any]) -> None:
        self.apply_punches(data["session_id"], data["cartridge_id"], (data["cores"],))

    def apply_punches(self, session_id: str, cartridge_id: str, cores: Iterable[int]) -> None:
        """Consecutive punches naming one session and one cartridge, in seq order."""
        session = self._open
        if session is None or session.session_id != session_id:
            return
        area = self._core_area_mm2.get(cartridge_id)
        if area is None and self._installed is not None:
            area = self._core_area_mm2.get(self._installed)
        # One punch at a time, as the platform adds them: the same float sums (in
        # locals: attribute updates per punch were most of the cost).
        counted, cored_mm2 = session.cores_counted, session.cored_mm2
        for punched in cores:
            counted += punched
            if area is not None:
                cored_mm2 += punched * area
        session.cores_counted, session.cored_mm2 = counted, cored_mm2

    def _session_ended(self, seq: int, data: dict[str, Any]) -> None:
        session = self._open
        if session is None or session.session_id != data["session_id"]:
            return
        session.cores_reported = data["cores_total"]
        self._open = None
        self._on_done(session)


_FOLDS: Final[dict[str, Callable[[SessionFold, int, dict[str, Any]], None]]] = {
    "cartridge.installed": SessionFold._cartridge_installed,
    "cartridge.removed": SessionFold._cartridge_removed,
    "session.started": SessionFold._session_started,
    "cores.punched": SessionFold._cores_punched,
    "session.ended": SessionFold._session_ended,
}
