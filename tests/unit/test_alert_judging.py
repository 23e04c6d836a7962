"""The alert engine settles a device's standing conditions only when its book says
something would change, and decides exactly what settling after every fold decides:
the same alerts raised, escalated and resolved, with the same ids and times."""

import random
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial

import orjson
import pytest

from edge_agent.sealing import chain_readings
from schemas import Heartbeat, SealedEvent
from services.alerts import engine as engine_module
from services.alerts.conditions import Condition, Thresholds, standing, standing_keys
from services.alerts.engine import AlertDecisions, AlertEngine, Key
from services.alerts.policy import AlertPolicy
from services.projections.device import DeviceProjection
from services.projections.facts import fact_from_body
from simulation import HandpieceSimulator, fleet_device_ids
from tests.unit.test_alert_rules import Bench, boot, install, punch, start

START = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
_NAMESPACE = uuid.UUID("5d2b8f0e-1c4a-4e0b-9f3d-7a6c2e1b9d40")
# Tight thresholds, so that a simulated day reaches every standing rule many times.
_TIGHT = AlertPolicy(
    needle_life_low_pct=40.0,
    needle_end_of_life_pct=60.0,
    service_interval=1000,
    service_due_fraction=0.5,
    gap_grace_s=60.0,
)


def _event_id(device_id: str, seq: int) -> uuid.UUID:
    return uuid.uuid5(_NAMESPACE, f"{device_id}:{seq}")


def _fleet_day(devices: int, hours: int) -> list[list[SealedEvent]]:
    """Each simulated handpiece's sealed stream over ``hours`` of work."""
    simulators = [HandpieceSimulator(d, 11, START) for d in fleet_device_ids(devices)]
    return [
        chain_readings(
            simulator.device_id,
            (
                r
                for r in simulator.advance(START + timedelta(hours=hours))
                if not isinstance(r, Heartbeat)
            ),
            partial(_event_id, simulator.device_id),
        )
        for simulator in simulators
    ]


def _delivered(stream: list[SealedEvent], rng: random.Random) -> list[SealedEvent]:
    """The stream as a broker may deliver it: some events late (a gap others wait
    behind, overdue or not), some twice."""
    delivered = list(stream)
    for _ in range(len(delivered) // 150):
        at = rng.randrange(len(delivered))
        late = delivered.pop(at)
        delivered.insert(min(len(delivered), at + rng.randint(1, 30)), late)
    for _ in range(len(delivered) // 200):
        at = rng.randrange(len(delivered))
        delivered.insert(min(len(delivered), at + rng.randint(1, 30)), delivered[at])
    return delivered


def _judge_day(
    streams: list[list[SealedEvent]],
) -> tuple[AlertDecisions, dict[str, dict[Key, str]]]:
    """Every device's events through its fold and the engine, with service visits
    (``reevaluate``) and quiet spells (``tick``) among them."""
    rng = random.Random(5)
    book: dict[str, dict[Key, str]] = {}
    engine = AlertEngine(book, lambda _clinic: _TIGHT)
    for stream in streams:
        projection = DeviceProjection(stream[0].device_id)
        received = START
        for index, sealed in enumerate(_delivered(stream, rng)):
            # The platform receives in delivery order, shortly after the device's time.
            received = max(received, sealed.event.occurred_at)
            received += timedelta(seconds=rng.choice((1, 5, 30, 90)))
            fact = fact_from_body(sealed.body, sealed.event.hash, received)
            engine.after_fold(projection, fact, projection.apply(fact), "clinic-a")
            if index % 397 == 396:
                projection.record_service(received)
                engine.reevaluate(projection, received, "clinic-a")
            if index % 53 == 52:
                later = received + timedelta(minutes=rng.choice((2, 7, 20)))
                engine.tick(projection, later, received, "clinic-a")
    return engine.decisions, book


def _comparable(decisions: AlertDecisions) -> dict[str, object]:
    return {
        "raised": [(event.stream_id, event.body) for event in decisions.raised],
        "escalated": decisions.escalated,
        "updated": decisions.updated,
        "resolved": decisions.resolved,
        "added": decisions.added,
        "removed": decisions.removed,
    }


def test_a_simulated_fleet_day_gets_the_alerts_of_settling_after_every_fold(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Skipping the settle where the book already agrees changes no decision: the same
    raised events (ids, times, bytes), escalations, resolutions and book."""
    streams = _fleet_day(devices=12, hours=30)
    skipped = 0
    as_booked = engine_module._as_booked

    def counting(book: dict[Key, str], held: list[Key]) -> bool:
        nonlocal skipped
        agrees = as_booked(book, held)
        skipped += agrees
        return agrees

    monkeypatch.setattr(engine_module, "_as_booked", counting)
    decisions, book = _judge_day(streams)
    monkeypatch.setattr(engine_module, "_as_booked", lambda _book, _held: False)
    every_fold, every_book = _judge_day(streams)

    assert _comparable(decisions) == _comparable(every_fold)
    assert book == every_book
    # The day is worth comparing: every standing rule and the ladder did something,
    # and most folds were skipped.
    rules = {orjson.loads(event.body)["data"]["rule"] for event in decisions.raised}
    assert {"needle_life_low", "service_due", "integrity", "device_offline"} <= rules
    assert {escalation.condition.rule.value for escalation in decisions.escalated} >= {
        "needle_end_of_life"
    }
    assert len(decisions.resolved) > 10
    folds = sum(len(stream) for stream in streams)
    assert skipped > folds // 2


def test_standing_keys_are_the_keys_of_the_standing_conditions() -> None:
    """The cheap answer and the full one agree in every state of a simulated day."""
    for stream in _fleet_day(devices=4, hours=30):
        projection = DeviceProjection(stream[0].device_id)
        for policy in (_TIGHT, AlertPolicy()):
            for sealed in stream:
                fact = fact_from_body(sealed.body, sealed.event.hash, START)
                projection.apply(fact)
                assert standing_keys(projection, Thresholds.of(policy)) == list(
                    standing(projection, policy, START)
                )
            projection = DeviceProjection(stream[0].device_id)


def test_punches_on_a_fresh_cartridge_build_no_conditions(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Nothing holds and nothing is booked: a punch is folded without building the
    standing conditions (with their forecast), which used to happen for every event."""
    built: list[int] = []
    standing_of: Callable[..., dict[Key, Condition]] = standing

    def counted(*arguments: object) -> dict[Key, Condition]:
        built.append(1)
        return standing_of(*arguments)

    monkeypatch.setattr(engine_module, "standing", counted)
    bench = Bench()
    bench.feed(boot(), install(rated=1000), start(area_cm2=4000.0))
    bench.feed(*(punch(10) for _ in range(50)))
    assert built == []
    bench.feed(punch(300))  # 800 of 1000: the warning holds and is raised
    assert len(built) == 1
    assert bench.raised_rules() == ["needle_life_low"]
    bench.feed(*(punch(1) for _ in range(20)))  # booked already: nothing to build
    assert len(built) == 1
