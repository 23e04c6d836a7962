"""Limits on guessing, as pure rules: per account (five failures lock it for fifteen
minutes) and per client address (a rolling window of failures, across accounts, so
one address cannot try a password against every login)."""

import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

MAX_FAILURES: Final = 5
LOCK_FOR: Final = timedelta(minutes=15)
ADDRESS_FAILURES: Final = 20
ADDRESS_WINDOW_S: Final = 15 * 60.0
_ADDRESSES_KEPT: Final = 10_000


@dataclass(frozen=True, slots=True)
class Attempts:
    failures: int
    locked_until: datetime | None

    def locked(self, now: datetime) -> bool:
        return self.locked_until is not None and now < self.locked_until


def after_failure(attempts: Attempts, now: datetime) -> Attempts:
    """One more failure; the fifth in a row locks the account and starts a new count."""
    failures = attempts.failures + 1
    if failures >= MAX_FAILURES:
        return Attempts(0, now + LOCK_FOR)
    return Attempts(failures, attempts.locked_until)


CLEAN: Final = Attempts(0, None)


class AddressThrottle:
    """Failures per client address in the last window, held in this process's memory
    (every API process keeps its own; the per-account lock-out is the shared one)."""

    def __init__(self, limit: int = ADDRESS_FAILURES, window_s: float = ADDRESS_WINDOW_S) -> None:
        self._limit, self._window_s = limit, window_s
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def blocked(self, address: str) -> bool:
        with self._lock:
            return len(self._recent(address, time.monotonic())) >= self._limit

    def failed(self, address: str) -> None:
        with self._lock:
            now = time.monotonic()
            self._recent(address, now).append(now)
            if len(self._failures) > _ADDRESSES_KEPT:
                # Forget the addresses whose failures have all aged out.
                horizon = now - self._window_s
                stale = [key for key, seen in self._failures.items() if seen[-1] <= horizon]
                for key in stale:
                    del self._failures[key]

    def _recent(self, address: str, now: float) -> deque[float]:
        seen = self._failures.setdefault(address, deque())
        while seen and seen[0] <= now - self._window_s:
            seen.popleft()
        return seen
