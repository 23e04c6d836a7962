"""What a platform ack means for the device's own chain (DESIGN §4.2), decided
without I/O: the outbox fetches the device's delivery state and its own hash at the
acknowledged seq, asks ``judge_ack``, and applies the verdict in the same
transaction.  The link's republish clock (``AckClock``) is here too.
"""

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final

CHAIN_MISMATCH_FAULT: Final = "E-CHAIN-MISMATCH"


@dataclass(frozen=True, slots=True)
class DeliveryState:
    """One device's chain head and how much of it the platform has acknowledged."""

    head_seq: int
    head_hash: str
    acked_seq: int
    """The watermark: every event up to here is stored by the platform, hash-checked."""
    anchored: bool
    """The chain is known to continue the platform's stream for this id (or the
    platform holds none): only an anchored chain is published."""

    @property
    def unacknowledged(self) -> int:
        return self.head_seq - self.acked_seq


class AckVerdict(StrEnum):
    ADVANCE = "advance"
    """The ack covers events of ours with a matching hash: the watermark moves."""
    STALE = "stale"
    """Nothing new (at or below the watermark, or a seq we no longer hold)."""
    MISMATCH = "mismatch"
    """The platform's stream is not ours at that seq (a differing hash, or a seq past
    our head): two boards on one id, or a restored platform."""
    REBASE = "rebase"
    """An unanchored chain, and the platform holds a stream for the id: re-sync after it."""
    ANCHOR = "anchor"
    """An unanchored chain, and the platform holds nothing for the id: start at genesis."""


def judge_ack(
    state: DeliveryState, stored_through: int, ack_hash: str, own_hash: str | None
) -> AckVerdict:
    """``own_hash`` is the device's hash of seq ``stored_through`` (the zero hash for
    0), or ``None`` when the outbox does not hold that seq (pruned, or past the head).

    An unanchored chain never argues with the platform: whatever the platform holds
    wins, and the local events (none of them ever published) follow it.  An anchored
    chain never re-bases: a platform ahead of its head holds events this board never
    sealed (another board on the same id, or a restored platform), which is a fault
    like a differing hash at or below the head, never a splice.  Re-basing there
    would let a second board take the stream over from the one writing it.
    """
    if not state.anchored:
        return AckVerdict.ANCHOR if stored_through == 0 else AckVerdict.REBASE
    if stored_through > state.head_seq:
        return AckVerdict.MISMATCH
    if own_hash is None:
        return AckVerdict.STALE  # pruned long ago: acknowledged then, nothing to check
    if own_hash != ack_hash:
        return AckVerdict.MISMATCH
    return AckVerdict.ADVANCE if stored_through > state.acked_seq else AckVerdict.STALE


@dataclass(slots=True)
class AckClock:
    """When to republish what the broker took but the platform has not acknowledged.

    The clock starts when an unacknowledged stretch begins (the first publish after
    everything was acknowledged, or a connect with such events pending), restarts on
    every ack that moves the watermark, and is not reset by further publishes: a
    busy device whose acks stall at a hole still republishes the hole.  Each
    republish without progress doubles the wait, up to ``cap_s``, so a platform that
    never acks (a v1 platform) sees the backlog again only every few minutes."""

    base_s: float = 10.0
    cap_s: float = 300.0
    timeout_s: float = field(init=False)
    since: float | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.timeout_s = self.base_s

    def start(self, now: float) -> None:
        """Something unacknowledged went out; keeps an earlier start."""
        if self.since is None:
            self.since = now

    def restart(self, now: float, *, pending: bool) -> None:
        """A connect: wait a whole timeout again before republishing."""
        self.since = now if pending else None

    def progressed(self, now: float, *, pending: bool) -> None:
        """The watermark moved: back to the short wait."""
        self.timeout_s = self.base_s
        self.since = now if pending else None

    def due(self, now: float) -> bool:
        return self.since is not None and now - self.since >= self.timeout_s

    def fired(self, now: float) -> None:
        self.timeout_s = min(self.cap_s, self.timeout_s * 2)
        self.since = now


def mismatch_message(seq: int, platform_hash: str, own_hash: str | None, head_seq: int) -> str:
    if own_hash is None:
        return (
            f"platform ack for seq {seq} (hash {platform_hash[:16]}…) is past this "
            f"device's head, seq {head_seq}: the platform holds events it never sealed"
        )
    return (
        f"platform ack for seq {seq} has hash {platform_hash[:16]}…, "
        f"this device's chain has {own_hash[:16]}… at that seq"
    )
