"""The needle-life ladder (DESIGN §8): ``needle_life_low`` (warning) →
``needle_end_of_life`` (critical) → ``cartridge_overuse`` (critical) are rungs of one
alert about one subject, the cartridge.  A higher rung escalates the open alert in
place; a lower one never takes it down again (wear only grows while the cartridge is
in), and the alert resolves once no rung holds (the cartridge is out).  Pure."""

from collections.abc import Iterable
from typing import Final

from schemas.platform_events import AlertRule
from services.alerts.conditions import Condition

RUNGS: Final = (
    AlertRule.NEEDLE_LIFE_LOW.value,
    AlertRule.NEEDLE_END_OF_LIFE.value,
    AlertRule.CARTRIDGE_OVERUSE.value,
)
"""Lowest first.  Overuse is above end of life although both are critical: past the
rating, the cartridge is not merely worn out but used beyond what it was tested for."""
BASE_RULE: Final = RUNGS[0]
"""The rule that names a ladder's alert id, whichever rung it was raised on."""

_RANK: Final = {rule: rank for rank, rule in enumerate(RUNGS)}


def on_ladder(rule: str) -> bool:
    return rule in _RANK


def rung(rule: str) -> int:
    """0 for the lowest rung, up; ``ValueError`` for a rule off the ladder."""
    try:
        return _RANK[rule]
    except KeyError:
        raise ValueError(f"{rule} is not a needle-life rule") from None


def top(conditions: Iterable[Condition]) -> Condition:
    """The highest rung among the conditions that hold for one cartridge."""
    return max(conditions, key=lambda condition: rung(condition.rule.value))


def climbs(held_rule: str, reached: Iterable[str]) -> bool:
    """Whether ``held_rule`` is above every rung the alert has reached."""
    return rung(held_rule) > max((rung(rule) for rule in reached), default=-1)
