"""Retry delays grow exponentially with bounded jitter, and attempts are bounded."""

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.delivery import (
    REFUSED_BY_POLICY,
    PostResult,
    RetryPolicy,
    after_attempt,
    retry_delay,
)
from services.delivery.retry import Delivered, GaveUp, RetryLater, retry_ceiling

POLICY = RetryPolicy(base_s=1.0, cap_s=600.0, max_attempts=8)


def test_ceilings_double_from_the_base_up_to_the_cap() -> None:
    """1, 2, 4, … seconds after successive failures, never more than the cap."""
    ceilings = [retry_ceiling(POLICY, failures) for failures in range(1, 13)]
    assert ceilings == [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 600, 600]
    assert retry_ceiling(POLICY, 10_000) == 600


@given(failures=st.integers(min_value=1, max_value=200), seed=st.integers())
def test_each_delay_lies_between_half_its_ceiling_and_its_ceiling(failures: int, seed: int) -> None:
    """Jitter spreads retries but always leaves at least half the exponential wait."""
    ceiling = retry_ceiling(POLICY, failures)
    assert ceiling / 2 <= retry_delay(POLICY, failures, random.Random(seed)) <= ceiling


def test_jitter_spreads_simultaneous_failures() -> None:
    """Deliveries that failed together do not all come back at the same instant."""
    rng = random.Random(7)
    delays = {round(retry_delay(POLICY, 4, rng), 6) for _ in range(50)}
    assert len(delays) > 40


@pytest.mark.parametrize("status", [200, 201, 204, 299])
def test_a_2xx_answer_delivers(status: int) -> None:
    """Any 2xx status is success."""
    assert after_attempt(POLICY, 1, PostResult(status), random.Random(1)) == Delivered(status)


@pytest.mark.parametrize(
    ("result", "logged"),
    [(PostResult(500), "5xx"), (PostResult(302), "3xx"), (PostResult(404), "4xx"),
     (PostResult(None, "unreachable", "ConnectError from 10.0.0.7"), "unreachable"),
     (PostResult(None, "timeout", "ReadTimeout from 10.0.0.7"), "timeout")],
)  # fmt: skip
def test_anything_else_is_retried_and_logged_as_a_class(result: PostResult, logged: str) -> None:
    """Server errors, redirects, client errors and network failures are retried; the log
    keeps the status class or failure word, never the detail (addresses, exceptions)."""
    outcome = after_attempt(POLICY, 1, result, random.Random(1))
    assert isinstance(outcome, RetryLater)
    assert outcome.status == result.status
    assert outcome.error == logged
    assert 0.5 <= outcome.delay_s <= 1.0


def test_an_attempt_the_egress_policy_refused_is_not_retried() -> None:
    """A refusal by the egress policy gives up at once, whatever attempts are left."""
    refused = PostResult(None, REFUSED_BY_POLICY, "x.example resolves to 127.0.0.1")
    assert after_attempt(POLICY, 1, refused, random.Random(1)) == GaveUp(
        None, "refused: egress policy"
    )


def test_a_receiver_that_always_fails_gets_exactly_max_attempts() -> None:
    """Attempt after attempt, the last permitted failure gives up: never infinite."""
    rng = random.Random(3)
    attempts, outcome = 0, None
    while not isinstance(outcome, GaveUp):
        attempts += 1
        assert attempts <= POLICY.max_attempts
        outcome = after_attempt(POLICY, attempts, PostResult(503), rng)
    assert attempts == POLICY.max_attempts
    assert outcome == GaveUp(503, "5xx")


def test_a_success_on_the_last_attempt_still_delivers() -> None:
    """The bound stops retries, not a success that arrives in time."""
    assert after_attempt(POLICY, 8, PostResult(200), random.Random(1)) == Delivered(200)


@pytest.mark.parametrize(
    "arguments",
    [{"base_s": 0}, {"base_s": 2, "cap_s": 1}, {"max_attempts": 0}, {"timeout_s": 0}],
)
def test_policies_that_cannot_work_are_refused(arguments: dict[str, float]) -> None:
    """A zero base, a cap below the base, no attempts or no time are configuration errors."""
    with pytest.raises(ValueError, match=r"retry|attempt"):
        RetryPolicy(**arguments)  # type: ignore[arg-type]
