"""Missing events, and when to ask a device for them again.  Pure: time is passed in.

A device publishes in order, so a hole in its stored stream means a batch went
astray (or was dead-lettered).  A hole that is still open after the grace period
gets a ``resend`` command; the command is repeated a bounded number of times,
then the gap is reported as abandoned (the integrity rule takes it from there).
"""

from dataclasses import dataclass, field
from typing import Final

DEFAULT_GRACE_S: Final = 30.0
DEFAULT_RETRY_EVERY_S: Final = 60.0
DEFAULT_MAX_ATTEMPTS: Final = 5


@dataclass(frozen=True, slots=True)
class ResendRequest:
    device_id: str
    from_seq: int
    to_seq: int
    attempt: int


@dataclass(slots=True)
class _OpenGap:
    from_seq: int
    to_seq: int
    first_seen: float
    attempts: int = 0
    next_request_at: float = 0.0


@dataclass(slots=True)
class GapTracker:
    grace_s: float = DEFAULT_GRACE_S
    retry_every_s: float = DEFAULT_RETRY_EVERY_S
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    _open: dict[str, list[_OpenGap]] = field(default_factory=dict)
    _abandoned: dict[str, list[tuple[int, int]]] = field(default_factory=dict)
    abandoned: int = 0

    def observe(self, device_id: str, gaps: list[tuple[int, int]], now: float) -> None:
        """The device's gaps as the store shows them now; a gap that was open keeps
        its age and attempts (even if a partial fill narrowed it)."""
        previous = self._open.get(device_id, [])
        current: list[_OpenGap] = []
        given_up = self._abandoned.get(device_id, [])
        for from_seq, to_seq in gaps:
            if any(a <= to_seq and from_seq <= b for a, b in given_up):
                continue  # asked for often enough; the integrity alert owns it now
            known = next(
                (g for g in previous if g.from_seq <= to_seq and from_seq <= g.to_seq), None
            )
            if known is None:
                current.append(_OpenGap(from_seq, to_seq, now, next_request_at=now + self.grace_s))
            else:
                current.append(
                    _OpenGap(
                        from_seq, to_seq, known.first_seen, known.attempts, known.next_request_at
                    )
                )
        if current:
            self._open[device_id] = current
        else:
            self._open.pop(device_id, None)

    def has_open_gaps(self, device_id: str) -> bool:
        return device_id in self._open

    def open_gaps(self) -> int:
        return sum(len(gaps) for gaps in self._open.values())

    def due(self, now: float) -> list[ResendRequest]:
        """Resend commands to publish now; abandons gaps out of attempts."""
        requests: list[ResendRequest] = []
        for device_id, gaps in list(self._open.items()):
            for gap in list(gaps):
                if now < gap.next_request_at:
                    continue
                if gap.attempts >= self.max_attempts:
                    gaps.remove(gap)
                    self._abandoned.setdefault(device_id, []).append((gap.from_seq, gap.to_seq))
                    self.abandoned += 1
                    continue
                gap.attempts += 1
                gap.next_request_at = now + self.retry_every_s
                requests.append(ResendRequest(device_id, gap.from_seq, gap.to_seq, gap.attempts))
            if not gaps:
                del self._open[device_id]
        return requests
