"""Faults a handpiece has raised and not yet cleared."""

from dataclasses import dataclass
from datetime import datetime

from schemas import Severity


@dataclass(frozen=True, slots=True)
class OpenFault:
    fault_code: str
    severity: Severity
    message: str
    raised_at: datetime
    raised_seq: int
    """A repeat ``fault.raised`` of an open code replaces it: the latest word counts."""
