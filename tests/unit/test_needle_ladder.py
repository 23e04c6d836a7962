"""The needle-life ladder (DESIGN §8): one alert per cartridge that escalates in place
from warning to end of life to overuse, resolves once with the cartridge's removal,
and keeps one clock for its times."""

from datetime import UTC, datetime, timedelta

import orjson
import pytest

from services.alerts import ladder
from services.alerts.engine import AlertEngine
from services.alerts.events import escalated
from services.alerts.policy import AlertPolicy
from services.projections import Fact
from tests.unit.test_alert_rules import (
    DEVICE,
    Bench,
    boot,
    end,
    fault,
    install,
    punch,
    remove,
    start,
)


def test_rungs_rank_low_end_of_life_overuse() -> None:
    """Overuse is the top rung, above end of life, above the 80 % warning."""
    assert [ladder.rung(rule) for rule in ladder.RUNGS] == [0, 1, 2]
    assert ladder.climbs("needle_end_of_life", ["needle_life_low"])
    assert not ladder.climbs("needle_life_low", ["needle_end_of_life"])
    assert not ladder.on_ladder("device_fault")
    with pytest.raises(ValueError, match="not a needle-life rule"):
        ladder.rung("device_fault")


def test_a_worn_cartridge_raises_one_alert_that_escalates_twice() -> None:
    """80 %, then end of life, then overuse: one alert raised, two escalations of it."""
    bench = Bench()
    bench.feed(boot(), install(rated=1000), start(area_cm2=4000.0), punch(800))
    decisions = bench.engine.decisions
    assert bench.raised_rules() == ["needle_life_low"]
    alert_id = orjson.loads(decisions.raised[0].body)["data"]["alert_id"]
    bench.feed(punch(150))
    bench.feed(punch(51))
    assert bench.raised_rules() == ["needle_life_low"]  # never a parallel alert
    assert [(e.alert_id, e.condition.rule.value, e.condition.severity.value)
            for e in decisions.escalated] == [
        (alert_id, "needle_end_of_life", "critical"),
        (alert_id, "cartridge_overuse", "critical"),
    ]  # fmt: skip
    assert decisions.escalated[0].at < decisions.escalated[1].at
    bench.feed(punch(10))  # still over: nothing more to say
    assert len(decisions.escalated) == 2
    bench.feed(end(cores_total=1011, actuations_total=1011), remove())
    assert [r.alert_id for r in decisions.resolved] == [alert_id]  # resolved once


def test_a_cartridge_first_seen_past_end_of_life_is_raised_on_its_top_rung() -> None:
    """A jump straight past 95 % raises one alert on end of life, no escalation."""
    bench = Bench()
    bench.feed(boot(), install(rated=1000), start(area_cm2=4000.0), punch(960))
    assert bench.raised_rules() == ["needle_end_of_life"]
    assert bench.engine.decisions.escalated == []
    bench.feed(punch(50))
    assert [e.condition.rule.value for e in bench.engine.decisions.escalated] == [
        "cartridge_overuse"
    ]


def test_a_book_from_before_the_ladder_carries_on_with_its_lowest_alert() -> None:
    """Parallel alerts booked before the ladder: no new one, all resolve together."""
    bench = Bench()
    bench.feed(boot(), install(rated=1000), start(area_cm2=4000.0), punch(960))
    bench.engine.book[DEVICE] = {
        ("needle_life_low", "CT-1"): "alert-low",
        ("needle_end_of_life", "CT-1"): "alert-end",
    }
    bench.feed(punch(50))
    decisions = bench.engine.decisions
    assert [(e.alert_id, e.condition.rule.value) for e in decisions.escalated] == [
        ("alert-low", "cartridge_overuse")
    ]
    bench.feed(end(cores_total=1010, actuations_total=1010), remove())
    assert sorted(r.alert_id for r in decisions.resolved) == ["alert-end", "alert-low"]


def test_a_book_reloaded_after_an_escalation_does_not_escalate_again() -> None:
    """The book remembers every rung reached, so a restart says nothing twice."""
    bench = Bench()
    bench.feed(boot(), install(rated=1000), start(area_cm2=4000.0), punch(960))
    restarted = AlertEngine({DEVICE: dict(bench.engine.book[DEVICE])}, lambda _: AlertPolicy())
    bench.engine = restarted
    bench.feed(punch(1))
    assert restarted.decisions.raised == []
    assert restarted.decisions.escalated == []


def test_a_fault_alert_is_raised_and_resolved_on_the_platform_clock() -> None:
    """The device's clock runs an hour behind: raised and resolved both use receive
    time, the device's time is kept beside it."""
    bench = Bench()
    bench.feed(boot())
    late = timedelta(hours=1)

    def skewed(seq: int, kind: str, data: dict[str, object]) -> None:
        bench.clock += timedelta(seconds=30)
        previous = bench.facts[-1].hash
        received = bench.clock
        fact = Fact(DEVICE, seq, kind, received - late, received, f"{seq:064x}", previous, data)
        bench.facts.append(fact)
        bench.apply(fact)

    kind, data = fault("critical")
    skewed(2, kind, data)
    raised_at = bench.clock
    skewed(3, "fault.cleared", {"fault_code": "E-VAC-LOW"})
    decisions = bench.engine.decisions
    body = orjson.loads(decisions.raised[0].body)
    assert body["occurred_at"].startswith(raised_at.strftime("%Y-%m-%dT%H:%M:%S"))
    assert body["data"]["device_time"].startswith((raised_at - late).strftime("%Y-%m-%dT%H:%M:%S"))
    assert decisions.resolved[0].at - raised_at == timedelta(seconds=30)


def test_escalation_events_are_the_same_bytes_when_built_twice() -> None:
    """An escalation is built from its condition and the stream head, never the clock."""
    bench = Bench()
    bench.feed(boot(), install(rated=1000), start(area_cm2=4000.0), punch(800), punch(150))
    step = bench.engine.decisions.escalated[0]
    at = datetime(2026, 11, 30, 9, tzinfo=UTC)
    first = escalated(step.alert_id, DEVICE, step.condition, seq=2, prev_hash="a" * 64, at=at)
    again = escalated(step.alert_id, DEVICE, step.condition, seq=2, prev_hash="a" * 64, at=at)
    assert first.body == again.body
    assert orjson.loads(first.body)["type"] == "alert.escalated"
