"""Reconnect delays: exponential with full jitter, so a fleet that lost its broker
does not reconnect in lock-step when it comes back.

A plain value object rather than a retry library: a connection driven by a
non-blocking loop asks "when may I try again?", it never sleeps inside a retry.
"""

import random
from dataclasses import dataclass, field


@dataclass(slots=True)
class Backoff:
    base_s: float = 0.5
    cap_s: float = 30.0
    rng: random.Random = field(default_factory=random.Random)
    _failures: int = 0

    def next_delay(self) -> float:
        """The wait before the next attempt, after one more failure."""
        ceiling = min(self.cap_s, self.base_s * 2**self._failures)
        self._failures = min(self._failures + 1, 32)
        return self.rng.uniform(0, ceiling)

    def reset(self) -> None:
        self._failures = 0
