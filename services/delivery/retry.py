"""When a failed webhook delivery is tried again, and when it is given up.  Pure.

Delays grow exponentially with "equal jitter": half of each delay is fixed and half
random.  The random half spreads the retries of many deliveries that failed together
(a receiver's outage) so they do not return in lock-step; the fixed half guarantees
a receiver a minimum rest between attempts.  Attempts are bounded, so a receiver
that is gone for good costs a known, small amount of work.
"""

import random
from dataclasses import dataclass
from typing import Final

MAX_ERROR_TEXT: Final = 500
REFUSED_BY_POLICY: Final = "refused: egress policy"
"""The failure of an attempt the egress policy stopped before it connected."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    base_s: float = 1.0
    """The delay after the first failed attempt (before jitter)."""
    cap_s: float = 600.0
    """No delay exceeds this."""
    max_attempts: int = 8
    """Attempts in all, the first included; then the delivery is marked failed."""
    timeout_s: float = 10.0
    """How long one attempt may take before it counts as failed."""

    def __post_init__(self) -> None:
        if self.base_s <= 0 or self.cap_s < self.base_s:
            raise ValueError("retry delays need 0 < base_s <= cap_s")
        if self.max_attempts < 1:
            raise ValueError("a delivery needs at least one attempt")
        if self.timeout_s <= 0:
            raise ValueError("an attempt needs a positive timeout")


def retry_ceiling(policy: RetryPolicy, failed_attempts: int) -> float:
    """The longest wait after ``failed_attempts`` (>= 1) failures."""
    exponent = min(failed_attempts - 1, 62)  # beyond this 2**n only overflows the cap
    return min(policy.cap_s, policy.base_s * 2.0**exponent)


def retry_delay(policy: RetryPolicy, failed_attempts: int, rng: random.Random) -> float:
    """The wait before the next attempt: within [ceiling / 2, ceiling]."""
    ceiling = retry_ceiling(policy, failed_attempts)
    return ceiling / 2 + rng.uniform(0, ceiling / 2)


@dataclass(frozen=True, slots=True)
class PostResult:
    """What one HTTP attempt came to: a status, or why there was none."""

    status: int | None
    failure: str | None = None
    """Without a status: ``timeout``, ``unreachable``, ``tls failed``, ``invalid
    response`` or ``refused: egress policy``; words that say nothing of the network
    behind the receiver."""
    detail: str | None = None
    """More for the operator's log (which address a refusal named); never stored."""

    @property
    def succeeded(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def summary(self) -> str:
        """What the delivery log keeps: the status class (``4xx``) or the failure."""
        if self.status is not None:
            return f"{self.status // 100}xx"
        return self.failure or "unreachable"


@dataclass(frozen=True, slots=True)
class Delivered:
    status: int


@dataclass(frozen=True, slots=True)
class RetryLater:
    delay_s: float
    status: int | None
    error: str


@dataclass(frozen=True, slots=True)
class GaveUp:
    status: int | None
    error: str


Outcome = Delivered | RetryLater | GaveUp


def after_attempt(
    policy: RetryPolicy, attempts: int, result: PostResult, rng: random.Random
) -> Outcome:
    """What becomes of a delivery whose attempt number ``attempts`` gave ``result``.

    Only a 2xx answer delivers: a redirect is a failure too, since following one
    would send the signed notice somewhere the clinic never registered.  An attempt
    the egress policy refused is not tried again: the URL, or what its name resolves
    to now, points where no notice may go, and asking again would only probe it.
    """
    if result.status is not None and result.succeeded:
        return Delivered(result.status)
    error = result.summary[:MAX_ERROR_TEXT]
    if result.failure == REFUSED_BY_POLICY:
        return GaveUp(None, error)
    if attempts >= policy.max_attempts:
        return GaveUp(result.status, error)
    return RetryLater(retry_delay(policy, attempts, rng), result.status, error)
