"""Integrity findings: what a device's stream says that does not add up.

The store keeps such events (DESIGN §5: dropping them would tear the chain), so the
fold records them as values for the alert engine's ``integrity`` rule instead of
raising.
"""

from dataclasses import dataclass
from enum import StrEnum


class FindingKind(StrEnum):
    CHAIN_BREAK = "chain_break"
    """``prev_hash`` is not the hash of the event before it."""
    CORES_MISMATCH = "cores_mismatch"
    """A punch's ``cores`` is not ``actuations × needles`` of its cartridge."""
    CARTRIDGE_NOT_INSTALLED = "cartridge_not_installed"
    """An event names a cartridge other than the one installed (or none is)."""
    SESSION_NOT_OPEN = "session_not_open"
    """A punch or a session end names a session that is not the open one."""
    SESSION_OVERLAP = "session_overlap"
    """A session started while another was still open."""
    MALFORMED = "malformed"
    """A stored event lacks a field its type needs: only a tampered store does that."""


@dataclass(frozen=True, slots=True)
class Finding:
    seq: int
    """The event that showed the problem."""
    kind: FindingKind
    detail: str
    """One sentence for people: what was expected and what the event said."""
