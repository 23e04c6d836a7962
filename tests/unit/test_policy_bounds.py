"""The manufacturer's bounds on clinic alert policies, as pure rules."""

import pytest

from services.alerts.policy import PolicyError
from services.alerts.policy_bounds import (
    DEFAULT_BOUNDS,
    Bound,
    BoundsError,
    bounds_in_force,
    check_bounds,
    check_overrides,
)


def test_the_defaults_refuse_a_coverage_maximum_of_100() -> None:
    """A coverage maximum of 100 % would silence the alert: refused, naming key, value, bound."""
    with pytest.raises(PolicyError) as refused:
        check_overrides({"coverage_max_pct": 100}, DEFAULT_BOUNDS)
    assert str(refused.value) == (
        "coverage_max_pct: 100 is outside the manufacturer's bounds 1..20"
    )


def test_overrides_within_the_bounds_make_the_policy() -> None:
    """An override inside its range is the policy that then holds."""
    policy = check_overrides({"coverage_max_pct": 6, "needle_life_low_pct": 70}, DEFAULT_BOUNDS)
    assert (policy.coverage_max_pct, policy.needle_life_low_pct) == (6, 70)


def test_the_policys_own_limits_still_apply_within_wide_bounds() -> None:
    """Bounds narrow what a policy accepts; they never widen it past its own limits."""
    with pytest.raises(PolicyError, match="coverage_max_pct"):
        check_overrides({"coverage_max_pct": 0}, {"coverage_max_pct": Bound(None, None)})


def test_what_the_manufacturer_sets_replaces_that_keys_default() -> None:
    """Bounds in force are the defaults with the manufacturer's in their place."""
    bounds = bounds_in_force({"coverage_max_pct": Bound(2, 12)})
    assert bounds["coverage_max_pct"] == Bound(2, 12)
    assert bounds["needle_life_low_pct"] == DEFAULT_BOUNDS["needle_life_low_pct"]
    with pytest.raises(PolicyError, match=r"outside the manufacturer.s bounds 2\.\.12"):
        check_overrides({"coverage_max_pct": 15}, bounds)


def test_a_one_sided_bound_says_so() -> None:
    """A bound with one side open is named by its one limit."""
    with pytest.raises(PolicyError, match=r"needle_life_low_pct: 40 is .* ≥ 60"):
        check_overrides({"needle_life_low_pct": 40}, {"needle_life_low_pct": Bound(60, None)})


@pytest.mark.parametrize(
    ("bounds", "message"),
    [
        ({"coverage": Bound(1, 2)}, "coverage: not a policy key"),
        ({"coverage_max_pct": Bound(10, 5)}, "coverage_max_pct: min 10 is above max 5"),
        ({"coverage_max_pct": Bound(10, 15)}, "leave out the default 8"),
    ],
)
def test_bounds_that_cannot_hold_are_refused(bounds: dict[str, Bound], message: str) -> None:
    """Unknown keys, empty ranges and ranges without DESIGN §7's default are refused."""
    with pytest.raises(BoundsError, match=message):
        check_bounds(bounds)


def test_the_default_bounds_hold_every_default() -> None:
    """A clinic with no override is always within the default bounds."""
    check_bounds(DEFAULT_BOUNDS)
