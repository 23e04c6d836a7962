"""Every rule of DESIGN §7: it fires, it does not fire just under its threshold, and
it resolves (or stays open) as specified; redelivery never opens a second alert."""

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from schemas import GENESIS_HASH
from services.alerts.engine import AlertEngine
from services.alerts.policy import AlertPolicy
from services.projections import DeviceProjection, Fact
from tests.support.streams import timestamp

DEVICE = "HP-000808"
SESSION = "6f1c2a4e-6d1f-4c3e-9a7e-2f1f0c9d8e11"
EPOCH = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
Step = tuple[str, dict[str, Any]]


class Bench:
    """A device fold and the alert engine, fed steps one event at a time."""

    def __init__(self, policy: AlertPolicy | None = None) -> None:
        self.projection = DeviceProjection(DEVICE)
        self.engine = AlertEngine({}, lambda _clinic: policy or AlertPolicy())
        self.facts: list[Fact] = []
        self.clock = EPOCH

    def feed(self, *steps: Step) -> None:
        for kind, data in steps:
            seq = len(self.facts) + 1
            previous = self.facts[-1].hash if self.facts else GENESIS_HASH
            self.clock += timedelta(seconds=2)
            fact = Fact(DEVICE, seq, kind, self.clock, self.clock, f"{seq:064x}", previous, data)
            self.facts.append(fact)
            self.apply(fact)

    def apply(self, fact: Fact) -> None:
        changes = self.projection.apply(fact)
        self.engine.after_fold(self.projection, fact, changes, "clinic-1")

    def tick(self, after: timedelta) -> None:
        self.engine.tick(self.projection, self.clock + after, self.clock, "clinic-1")

    def open_rules(self) -> list[tuple[str, str]]:
        """(rule, subject) of every alert raised and not resolved, at the rung it has
        escalated to."""
        resolved = {r.alert_id for r in self.engine.decisions.resolved}
        climbed = {e.alert_id: e.condition.rule.value for e in self.engine.decisions.escalated}
        return sorted(
            (climbed.get(data["alert_id"], data["rule"]), data["subject"])
            for data in (orjson.loads(e.body)["data"] for e in self.engine.decisions.raised)
            if data["alert_id"] not in resolved
        )

    def raised_rules(self) -> list[str]:
        return [orjson.loads(e.body)["data"]["rule"] for e in self.engine.decisions.raised]


def boot() -> Step:
    return "agent.started", {"firmware_version": "2.4.1", "agent_version": "1.0.0", "boot_id": "b"}


def install(rated: int = 1000, needles: int = 1, cartridge: str = "CT-1") -> Step:
    return "cartridge.installed", {
        "cartridge_id": cartridge, "lot": "L1", "needles": needles, "needle_gauge": 22,
        "core_diameter_mm": 0.5, "rated_actuations": rated,
    }  # fmt: skip


def start(area_cm2: float = 400.0) -> Step:
    return "session.started", {
        "session_id": SESSION, "treatment_area": "neck", "area_cm2": area_cm2,
        "operator_ref": "op-1", "cartridge_id": "CT-1",
    }  # fmt: skip


def punch(actuations: int, needles: int = 1, cores: int | None = None) -> Step:
    return "cores.punched", {
        "session_id": SESSION, "cartridge_id": "CT-1", "actuations": actuations,
        "cores": actuations * needles if cores is None else cores, "depth_mm": 1.5,
        "window_start": timestamp(EPOCH), "window_end": timestamp(EPOCH + timedelta(seconds=1)),
    }  # fmt: skip


def end(cores_total: int, actuations_total: int) -> Step:
    return "session.ended", {
        "session_id": SESSION, "actuations_total": actuations_total, "cores_total": cores_total,
        "duration_s": 1800, "reason": "completed",
    }  # fmt: skip


def remove() -> Step:
    return "cartridge.removed", {"cartridge_id": "CT-1", "actuations_total": 0, "reason": "worn"}


def fault(severity: str, code: str = "E-VAC-LOW") -> Step:
    return "fault.raised", {"fault_code": code, "severity": severity, "message": "vacuum low"}


@pytest.mark.parametrize(
    ("rule", "under", "at"),
    [
        ("needle_life_low", 799, 800),
        ("needle_end_of_life", 949, 950),
        ("cartridge_overuse", 1000, 1001),
    ],
)
def test_cartridge_rules_fire_at_their_threshold_and_resolve_on_removal(
    rule: str, under: int, at: int
) -> None:
    """Each cartridge rule fires at its threshold, not one under, and resolves on removal."""
    bench = Bench()
    bench.feed(boot(), install(rated=1000), start(area_cm2=2000.0), punch(under))
    assert rule not in bench.raised_rules()
    bench.feed(punch(at - under))
    assert (rule, "CT-1") in bench.open_rules()
    bench.feed(end(cores_total=at, actuations_total=at), remove())
    assert (rule, "CT-1") not in bench.open_rules()  # resolved with the cartridge gone


def test_device_fault_fires_for_warnings_not_info_and_resolves_on_clear() -> None:
    """A warning fault raises device_fault, an info one does not, and clearing it resolves it."""
    bench = Bench()
    bench.feed(boot(), fault("info"))
    assert bench.raised_rules() == []
    bench.feed(fault("warning", "E-MOTOR-STALL"))
    assert bench.open_rules() == [("device_fault", "E-MOTOR-STALL")]
    bench.feed(("fault.cleared", {"fault_code": "E-MOTOR-STALL"}))
    assert bench.open_rules() == []


def test_device_offline_after_five_silent_minutes_in_a_session_and_back() -> None:
    """Five silent minutes in a session raise one device_offline; the next event resolves it."""
    bench = Bench()
    bench.feed(boot(), install(), start(), punch(5))
    bench.tick(timedelta(seconds=299))
    assert bench.raised_rules() == []
    bench.tick(timedelta(seconds=300))
    assert bench.open_rules() == [("device_offline", "presence")]
    bench.tick(timedelta(seconds=900))  # still silent: still the one alert
    assert bench.raised_rules() == ["device_offline"]
    bench.feed(punch(5))
    assert bench.open_rules() == []


def test_no_offline_alert_outside_a_session() -> None:
    """A device silent for hours outside a session raises no offline alert."""
    bench = Bench()
    bench.feed(boot(), install())
    bench.tick(timedelta(hours=3))
    assert bench.raised_rules() == []


def test_session_count_mismatch_fires_when_totals_differ_and_stays_open() -> None:
    """Differing session totals raise session_count_mismatch, still open after a new cartridge."""
    agreeing = Bench()
    agreeing.feed(boot(), install(), start(), punch(10), end(cores_total=10, actuations_total=10))
    assert "session_count_mismatch" not in agreeing.raised_rules()
    bench = Bench()
    bench.feed(boot(), install(), start(), punch(10), end(cores_total=13, actuations_total=13))
    assert bench.open_rules() == [("session_count_mismatch", SESSION)]
    bench.feed(remove(), install(cartridge="CT-2"))
    assert bench.open_rules() == [("session_count_mismatch", SESSION)]


def test_coverage_exceeded_just_over_the_policy_maximum_and_stays_open() -> None:
    """Coverage just over the policy maximum raises one coverage_exceeded that stays open."""
    # One 0.5 mm core is 0.19635 mm²; 8 % of 1 cm² (100 mm²) is 8 mm² ≈ 40.7 cores.
    under = Bench()
    under.feed(boot(), install(rated=10_000), start(area_cm2=1.0), punch(40))
    assert "coverage_exceeded" not in under.raised_rules()
    bench = Bench()
    bench.feed(boot(), install(rated=10_000), start(area_cm2=1.0), punch(41))
    assert bench.open_rules() == [("coverage_exceeded", SESSION)]
    bench.feed(punch(5), end(cores_total=46, actuations_total=46))
    assert bench.raised_rules() == ["coverage_exceeded"]  # one alert, still open


def test_a_clinic_policy_moves_the_coverage_maximum() -> None:
    """A clinic policy with a higher coverage maximum keeps coverage_exceeded from firing."""
    bench = Bench(AlertPolicy(coverage_max_pct=10.0))
    bench.feed(boot(), install(rated=10_000), start(area_cm2=1.0), punch(45))
    assert "coverage_exceeded" not in bench.raised_rules()


def test_service_due_at_ninety_percent_of_the_interval_resolves_after_service() -> None:
    """service_due fires at 90 % of the service interval and resolves once serviced."""
    policy = AlertPolicy(service_interval=1000)
    bench = Bench(policy)
    bench.feed(boot(), install(rated=100_000), start(area_cm2=2000.0), punch(899))
    assert "service_due" not in bench.raised_rules()
    bench.feed(punch(1))
    assert bench.open_rules() == [("service_due", "actuator")]
    bench.projection.record_service(bench.clock, actuations_at_service=900)
    bench.engine.reevaluate(bench.projection, bench.clock, "clinic-1")
    assert bench.open_rules() == []


def test_integrity_fires_on_a_cores_mismatch_and_stays_open() -> None:
    """Cores not matching actuations × needles raise one integrity alert that stays open."""
    bench = Bench()
    bench.feed(boot(), install(needles=3), start(), punch(4, needles=3))
    assert bench.raised_rules() == []
    bench.feed(punch(4, needles=3, cores=11))
    ((rule, subject),) = bench.open_rules()
    assert rule == "integrity"
    assert subject.startswith("seq-5")
    bench.feed(punch(4, needles=3))
    assert len(bench.open_rules()) == 1


def test_integrity_fires_for_a_gap_left_open_past_its_grace_and_resolves_when_filled() -> None:
    """A gap open past its grace raises an integrity alert that resolves when it is filled."""
    bench = Bench(AlertPolicy(gap_grace_s=60))
    bench.feed(boot(), install(), start(), punch(1), punch(1), punch(1))
    facts = bench.facts
    fresh = Bench(AlertPolicy(gap_grace_s=60))
    for fact in [*facts[:3], *facts[4:]]:  # seq 4 is missing
        fresh.apply(fact)
    fresh.clock = facts[4].occurred_at  # when the first event behind the gap arrived
    fresh.tick(timedelta(seconds=59))
    assert fresh.raised_rules() == []
    fresh.tick(timedelta(seconds=61))
    assert fresh.open_rules() == [("integrity", "gap-4")]
    fresh.apply(facts[3])  # the resend arrives
    assert fresh.open_rules() == []


def test_redelivery_never_opens_a_second_alert() -> None:
    """Every event delivered three more times opens no second alert."""
    bench = Bench()
    bench.feed(boot(), install(rated=1000), start(area_cm2=2000.0), punch(960), fault("critical"))
    first = list(bench.engine.decisions.raised)
    for fact in bench.facts * 3:  # every event again, three times
        bench.apply(fact)
    bench.tick(timedelta(seconds=1))
    assert bench.engine.decisions.raised == first
    assert len({e.stream_id for e in first}) == len(first)


def test_alert_events_are_the_same_bytes_when_decided_twice() -> None:
    """A restart decides again what it decided before the crash: same ids, same bytes."""
    one, two = Bench(), Bench()
    for bench in (one, two):
        bench.feed(boot(), install(rated=1000), start(area_cm2=2000.0), punch(990))
    assert [e.body for e in one.engine.decisions.raised] == [
        e.body for e in two.engine.decisions.raised
    ]


def test_a_session_ended_behind_a_gap_is_reconciled_after_the_grace_period() -> None:
    """A session ended behind a gap is judged after the grace; filling the gap reconciles it."""
    whole = Bench(AlertPolicy(gap_grace_s=60))
    whole.feed(
        boot(), install(), start(), punch(5), punch(5), end(cores_total=10, actuations_total=10)
    )
    facts = whole.facts
    bench = Bench(AlertPolicy(gap_grace_s=60))
    for fact in [*facts[:4], facts[5]]:  # the second punch (seq 5) never arrives
        bench.apply(fact)
    bench.clock = facts[5].occurred_at
    bench.tick(timedelta(seconds=59))
    assert "session_count_mismatch" not in bench.raised_rules()
    bench.tick(timedelta(seconds=60))
    assert ("session_count_mismatch", SESSION) in bench.open_rules()
    bench.apply(facts[4])  # the punch arrives at last: the session reconciles after all
    assert bench.open_rules() == []
