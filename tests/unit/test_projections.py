"""Folding one device's stream: the vectors' expected facts in any arrival order, the
seq-order fold (gaps, redelivery), the chain check, and integrity findings."""

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import ChainStatus, SealedEvent, Severity, canonical_body, seal
from services.projections import (
    Applied,
    DeviceProjection,
    Fact,
    FaultClosed,
    FaultOpened,
    FindingKind,
    FindingRecorded,
    MaintenanceStatus,
    ProjectionError,
    SessionChanged,
    SessionClosed,
    fact_from_body,
    fact_from_wire,
    fold_device,
)
from tests.support.streams import EPOCH, event_fields, reseal, timestamp
from tests.support.vectors import STREAM_DEVICES, load_stream

DEVICE = "HP-000777"
SESSION = "6f1c2a4e-6d1f-4c3e-9a7e-2f1f0c9d8e11"
LATER_SESSION = "0b6c2a4e-6d1f-4c3e-9a7e-2f1f0c9d8e12"
SHUFFLE_SEEDS = (1, 2, 3, 5, 8, 13)


class Story:
    """A device's stream told event by event, each sealed and chained as an agent would."""

    def __init__(self, device_id: str = DEVICE) -> None:
        self.device_id = device_id
        self.events: list[SealedEvent] = []
        self.clock = EPOCH

    def add(self, kind: str, data: dict[str, Any], *, after_s: float = 2.0) -> SealedEvent:
        self.clock += timedelta(seconds=after_s)
        prev_hash = self.events[-1].hash if self.events else "0" * 64
        fields = event_fields(self.device_id, len(self.events) + 1, prev_hash, kind, data)
        fields["occurred_at"] = timestamp(self.clock)
        self.events.append(seal(fields))
        return self.events[-1]

    def facts(self) -> list[Fact]:
        return [fact_from_body(event.body, event.hash, None) for event in self.events]

    def boot(self, firmware: str = "2.4.1") -> None:
        data = {"firmware_version": firmware, "agent_version": "1.0.0", "boot_id": "b-1"}
        self.add("agent.started", data)

    def install(
        self,
        cartridge_id: str = "CT-1",
        *,
        needles: int = 3,
        rated: int = 1000,
        diameter: float = 0.5,
    ) -> None:
        data = {
            "cartridge_id": cartridge_id,
            "lot": "L2611A",
            "needles": needles,
            "needle_gauge": 22,
            "core_diameter_mm": diameter,
            "rated_actuations": rated,
        }
        self.add("cartridge.installed", data)

    def remove(self, cartridge_id: str = "CT-1", actuations_total: int = 0) -> None:
        data = {
            "cartridge_id": cartridge_id,
            "actuations_total": actuations_total,
            "reason": "worn",
        }
        self.add("cartridge.removed", data)

    def start(
        self, session_id: str = SESSION, *, area_cm2: float = 40.0, cartridge_id: str = "CT-1"
    ) -> None:
        data = {
            "session_id": session_id,
            "treatment_area": "lower_face",
            "area_cm2": area_cm2,
            "operator_ref": "op-7f3a",
            "cartridge_id": cartridge_id,
        }
        self.add("session.started", data)

    def punch(
        self,
        actuations: int,
        *,
        needles: int = 3,
        cores: int | None = None,
        window_s: float = 2.0,
        session_id: str = SESSION,
        cartridge_id: str = "CT-1",
    ) -> None:
        """A punch window ending as it is reported, ``window_s`` long."""
        end = self.clock + timedelta(seconds=window_s)
        data = {
            "session_id": session_id,
            "cartridge_id": cartridge_id,
            "actuations": actuations,
            "cores": actuations * needles if cores is None else cores,
            "depth_mm": 1.5,
            "window_start": timestamp(end - timedelta(seconds=window_s)),
            "window_end": timestamp(end),
        }
        self.add("cores.punched", data, after_s=window_s)

    def wear(self, wear_pct: float, actuations_total: int, cartridge_id: str = "CT-1") -> None:
        data = {
            "cartridge_id": cartridge_id,
            "actuations_total": actuations_total,
            "wear_pct": wear_pct,
            "insertion_force_n": 1.9,
        }
        self.add("needle.wear", data)

    def end(self, actuations_total: int, cores_total: int, session_id: str = SESSION) -> None:
        data = {
            "session_id": session_id,
            "actuations_total": actuations_total,
            "cores_total": cores_total,
            "duration_s": 1800,
            "reason": "completed",
        }
        self.add("session.ended", data)

    def fault(self, code: str, severity: str) -> None:
        self.add("fault.raised", {"fault_code": code, "severity": severity, "message": "held"})

    def clear(self, code: str) -> None:
        self.add("fault.cleared", {"fault_code": code})


def session_story(punches: int = 4, actuations: int = 10) -> Story:
    """Boot, a 3-needle cartridge, one session of equal punches, and its end."""
    story = Story()
    story.boot()
    story.install()
    story.start()
    for _ in range(punches):
        story.punch(actuations)
    story.end(punches * actuations, punches * actuations * 3)
    return story


def _vector_facts(vectors_dir: Path, device_id: str) -> tuple[list[Fact], dict[str, Any]]:
    document = load_stream(vectors_dir, device_id)
    return [fact_from_wire(event) for event in document["events"]], document["expected"]


def _arrivals(facts: list[Fact], order: str) -> list[Fact]:
    """The facts as a transport might deliver them."""
    if order == "in_order":
        return list(facts)
    if order == "replayed_twice":
        return [*facts, *facts]
    rng = random.Random(order)
    if order.startswith("shuffled"):
        return rng.sample(facts, len(facts))
    # "duplicated": every fact once, a third of them again, all shuffled together.
    arrivals = [*facts, *rng.sample(facts, len(facts) // 3)]
    rng.shuffle(arrivals)
    return arrivals


def _assert_expected(projection: DeviceProjection, expected: dict[str, Any]) -> None:
    audit = projection.session_audit(expected["session_id"])
    assert audit is not None
    assert audit.cores_counted == expected["cores_counted"]
    assert audit.actuations_counted == expected["actuations"]
    assert audit.cores_reported == expected["cores_reported"]
    assert audit.reconciled is expected["reconciled"]
    assert round(audit.coverage_pct, 4) == expected["coverage_pct"]
    assert audit.cartridge_ids == (expected["cartridge_id"],)
    assert audit.chain_status is ChainStatus.VERIFIED
    summary = projection.summary()
    assert summary.cartridge is not None
    assert summary.cartridge.cartridge_id == expected["cartridge_id"]
    assert round(summary.cartridge.life_used_pct, 1) == expected["life_used_pct"]
    assert (summary.applied_through, summary.last_hash) == (
        expected["last_seq"],
        expected["last_hash"],
    )
    assert summary.chain_status is ChainStatus.VERIFIED
    assert projection.findings == []


# --- the protocol vectors


ARRIVAL_ORDERS = ("in_order", *(f"shuffled-{seed}" for seed in SHUFFLE_SEEDS), "duplicated")


@pytest.mark.parametrize("order", [*ARRIVAL_ORDERS, "replayed_twice"])
@pytest.mark.parametrize("device_id", STREAM_DEVICES)
def test_vector_streams_fold_to_their_expected_facts(
    vectors_dir: Path, device_id: str, order: str
) -> None:
    """Each vector stream, however delivered, folds to exactly the vector's expected facts
    and to the very state in-order delivery gives."""
    facts, expected = _vector_facts(vectors_dir, device_id)
    projection = fold_device(device_id, _arrivals(facts, order))
    _assert_expected(projection, expected)
    assert projection == fold_device(device_id, facts)
    assert projection.pending == {}


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_any_arrival_order_with_repeats_gives_the_in_order_state(
    vectors_dir: Path, data: st.DataObject
) -> None:
    """Property: any permutation of a stream with any repeats folds to the in-order state."""
    device_id = data.draw(st.sampled_from(STREAM_DEVICES))
    facts, _ = _vector_facts(vectors_dir, device_id)
    order = data.draw(st.permutations(facts))
    repeats = data.draw(st.lists(st.sampled_from(facts), max_size=len(facts)))
    arrivals = list(order)
    for fact in repeats:
        arrivals.insert(data.draw(st.integers(0, len(arrivals))), fact)
    assert fold_device(device_id, arrivals) == fold_device(device_id, facts)


@pytest.mark.parametrize("device_id", STREAM_DEVICES)
def test_stored_bodies_give_the_same_facts_as_wire_events(
    vectors_dir: Path, device_id: str
) -> None:
    """A fact read from a stored canonical body equals the one read off the wire."""
    received = datetime(2026, 11, 24, 9, 30, tzinfo=UTC)
    for event in load_stream(vectors_dir, device_id)["events"]:
        stored = fact_from_body(canonical_body(event), event["hash"], received)
        assert stored == fact_from_wire(event, received)
        assert stored.occurred_at.tzinfo is not None


def test_changes_name_every_folded_fact_and_the_session_verdict(vectors_dir: Path) -> None:
    """In order, each event yields ``Applied`` once, in seq order, and the session end
    reports the mismatching totals of the last vector stream as not reconciled."""
    facts, expected = _vector_facts(vectors_dir, "HP-000013")
    projection = DeviceProjection("HP-000013")
    changes = projection.apply_all(facts)
    applied = [change.fact.seq for change in changes if isinstance(change, Applied)]
    assert applied == list(range(1, expected["last_seq"] + 1))
    assert [c for c in changes if isinstance(c, SessionClosed)] == [
        SessionClosed(expected["session_id"], reconciled=False)
    ]
    assert projection.apply_all(facts) == []


# --- seq order: gaps and redelivery


def test_facts_beyond_a_gap_wait_until_it_fills() -> None:
    """Seqs 5 and 6 wait behind the missing 3 and 4; filling the gap folds all four,
    in seq order, and the stream then verifies."""
    facts = session_story(punches=3).facts()
    projection = DeviceProjection(DEVICE)
    for seq in (1, 2, 5, 6):
        projection.apply(facts[seq - 1])
    assert projection.applied_through == 2
    assert sorted(projection.pending) == [5, 6]
    summary = projection.summary()
    assert (summary.waiting_for_seq, summary.chain_status) == (3, ChainStatus.INCOMPLETE)
    assert summary.open_session_id is None
    assert projection.apply(facts[3]) == []
    changes = projection.apply(facts[2])
    assert [c.fact.seq for c in changes if isinstance(c, Applied)] == [3, 4, 5, 6]
    assert (projection.applied_through, projection.pending) == (6, {})
    assert projection.chain_status is ChainStatus.VERIFIED
    assert projection.summary().waiting_for_seq is None


def test_a_session_is_pending_while_its_end_waits_behind_a_gap() -> None:
    """Reconciliation waits for every event before ``session.ended``: with one punch
    missing the session stays pending and incomplete, then reconciles when it arrives."""
    facts = session_story(punches=3).facts()
    missing = facts[4]
    projection = fold_device(DEVICE, [fact for fact in facts if fact is not missing])
    audit = projection.session_audit(SESSION)
    assert audit is not None
    assert (audit.reconciled, audit.cores_reported, audit.chain_status) == (
        None,
        None,
        ChainStatus.INCOMPLETE,
    )
    assert audit.cores_counted == 30
    projection.apply(missing)
    audit = projection.session_audit(SESSION)
    assert audit is not None
    assert (audit.reconciled, audit.cores_counted, audit.cores_reported) == (True, 90, 90)
    assert audit.chain_status is ChainStatus.VERIFIED


def test_last_seen_takes_the_latest_times_of_any_fact_seen() -> None:
    """Last seen is the latest device and store times, waiting facts included."""
    story = session_story(punches=2)
    facts = story.facts()
    stamped = [
        fact_from_body(event.body, event.hash, EPOCH + timedelta(hours=1, seconds=seq))
        for seq, event in enumerate(story.events, start=1)
    ]
    projection = DeviceProjection(DEVICE)
    projection.apply(stamped[-1])
    assert projection.applied_through == 0
    assert projection.last_occurred_at == facts[-1].occurred_at
    assert projection.last_received_at == stamped[-1].received_at
    projection.apply_all(stamped[:-1])
    assert projection.last_received_at == stamped[-1].received_at


def test_another_devices_fact_is_refused() -> None:
    """Feeding a projection another device's fact is a wiring error, raised loudly."""
    fact = Story("HP-000778").add(
        "agent.started", {"firmware_version": "2", "agent_version": "1", "boot_id": "b"}
    )
    with pytest.raises(ProjectionError, match="HP-000778"):
        DeviceProjection(DEVICE).apply(fact_from_body(fact.body, fact.hash, None))


# --- the chain


def test_an_altered_event_breaks_the_chain_at_its_successor() -> None:
    """An event altered and rehashed breaks its successor's link: one finding there,
    the device chain broken from that seq, the session around it broken, and a later
    session, linked within itself, verified."""
    story = session_story(punches=3)
    story.start(LATER_SESSION)
    story.punch(5, session_id=LATER_SESSION)
    story.end(5, 15, session_id=LATER_SESSION)
    facts = story.facts()
    victim = story.events[4]
    forged = reseal(victim, data={**victim.to_wire()["data"], "depth_mm": 2.5})
    facts[4] = fact_from_body(forged.body, forged.hash, None)
    projection = fold_device(DEVICE, reversed(facts))
    assert [(f.seq, f.kind) for f in projection.findings] == [(6, FindingKind.CHAIN_BREAK)]
    assert "seq 5" in projection.findings[0].detail
    assert projection.chain_broken_at == 6
    assert projection.summary().chain_status is ChainStatus.BROKEN
    first, later = projection.session_audits()
    assert first.chain_status is ChainStatus.BROKEN
    assert later.chain_status is ChainStatus.VERIFIED
    assert projection.applied_through == len(facts)


def test_a_first_event_not_chained_to_genesis_is_a_break() -> None:
    """Seq 1 must point at the genesis hash."""
    story = Story()
    story.boot()
    forged = reseal(story.events[0], prev_hash="ab" * 32)
    projection = DeviceProjection(DEVICE)
    changes = projection.apply(fact_from_body(forged.body, forged.hash, None))
    findings = [c.finding for c in changes if isinstance(c, FindingRecorded)]
    assert [(f.seq, f.kind) for f in findings] == [(1, FindingKind.CHAIN_BREAK)]
    assert "genesis" in findings[0].detail
    assert projection.firmware_version == "2.4.1"


# --- integrity findings


def test_cores_that_are_not_actuations_times_needles_are_a_finding() -> None:
    """A punch with cores ≠ actuations × needles is recorded (not refused) and counted
    as reported, so the session still reconciles against the device's own totals."""
    story = Story()
    story.boot()
    story.install(needles=3)
    story.start()
    story.punch(10)
    story.punch(10, cores=31)
    story.end(20, 61)
    projection = fold_device(DEVICE, story.facts())
    assert [(f.seq, f.kind) for f in projection.findings] == [(5, FindingKind.CORES_MISMATCH)]
    assert "expected 30" in projection.findings[0].detail
    audit = projection.session_audit(SESSION)
    assert audit is not None
    assert (audit.cores_counted, audit.reconciled) == (61, True)


def test_punches_naming_the_wrong_cartridge_or_session_are_findings() -> None:
    """A punch naming a cartridge not installed, or a session not open, is a finding;
    the actuations still count for the device, but not for the wrong session."""
    story = session_story(punches=1)
    story.punch(4, session_id=LATER_SESSION)
    story.punch(6, cartridge_id="CT-9")
    story.end(10, 30)
    projection = fold_device(DEVICE, story.facts())
    kinds = [(f.seq, f.kind) for f in projection.findings]
    assert kinds == [
        (6, FindingKind.SESSION_NOT_OPEN),
        (7, FindingKind.CARTRIDGE_NOT_INSTALLED),
        (7, FindingKind.SESSION_NOT_OPEN),
        (8, FindingKind.SESSION_NOT_OPEN),
    ]
    assert projection.lifetime_actuations == 20
    assert projection.cartridge is not None
    assert projection.cartridge.actuations == 14
    audit = projection.session_audit(SESSION)
    assert audit is not None
    assert (audit.actuations_counted, audit.reconciled) == (10, True)


def test_a_session_started_over_an_open_one_is_a_finding() -> None:
    """Two sessions open at once are reported; the newer one is the open session."""
    story = Story()
    story.boot()
    story.install()
    story.start()
    story.start(LATER_SESSION)
    projection = fold_device(DEVICE, story.facts())
    assert [(f.seq, f.kind) for f in projection.findings] == [(4, FindingKind.SESSION_OVERLAP)]
    assert projection.summary().open_session_id == LATER_SESSION
    assert projection.lifetime_sessions == 2


# --- faults, cartridges, sessions


def test_faults_open_and_clear() -> None:
    """A raised fault is open until cleared; warning and critical ones make the device
    ``fault``, an info one alone does not."""
    story = Story()
    story.boot()
    story.fault("E-VAC-LOW", "warning")
    story.fault("E-OVERTEMP", "info")
    projection = DeviceProjection(DEVICE)
    changes = projection.apply_all(story.facts())
    opened = [c.fault.fault_code for c in changes if isinstance(c, FaultOpened)]
    assert opened == ["E-VAC-LOW", "E-OVERTEMP"]
    summary = projection.summary()
    assert [(f.fault_code, f.severity) for f in summary.open_faults] == [
        ("E-OVERTEMP", Severity.INFO),
        ("E-VAC-LOW", Severity.WARNING),
    ]
    assert summary.status is MaintenanceStatus.FAULT
    story.clear("E-VAC-LOW")
    story.clear("E-MOTOR-STALL")
    changes = projection.apply_all(story.facts())
    assert [c for c in changes if isinstance(c, FaultClosed)] == [FaultClosed("E-VAC-LOW")]
    assert list(projection.open_faults) == ["E-OVERTEMP"]
    assert projection.summary().status is MaintenanceStatus.OK


def test_a_cartridge_swapped_mid_session_counts_each_by_its_own_needles() -> None:
    """Coverage sums each punch at its own cartridge's core diameter; each cartridge's
    life counts only its own punches."""
    story = Story()
    story.boot()
    story.install("CT-1", needles=3, diameter=0.5)
    story.start(area_cm2=10.0)
    story.punch(100)
    story.remove("CT-1", 100)
    story.install("CT-2", needles=4, diameter=0.8, rated=500)
    story.punch(50, needles=4, cartridge_id="CT-2")
    story.end(150, 500)
    projection = fold_device(DEVICE, story.facts())
    audit = projection.session_audit(SESSION)
    assert audit is not None
    assert audit.cartridge_ids == ("CT-1", "CT-2")
    expected_mm2 = 300 * 3.141592653589793 * 0.25**2 + 200 * 3.141592653589793 * 0.4**2
    assert audit.coverage_pct == pytest.approx(expected_mm2 / (10.0 * 100) * 100)
    assert (audit.cores_counted, audit.reconciled) == (500, True)
    cartridge = projection.summary().cartridge
    assert cartridge is not None
    assert (cartridge.cartridge_id, cartridge.actuations, cartridge.life_used_pct) == (
        "CT-2",
        50,
        10.0,
    )
    assert projection.findings == []


def test_a_cartridge_put_back_keeps_its_use() -> None:
    """Removed and reinstalled, a cartridge resumes its actuations and wear."""
    story = session_story(punches=2, actuations=100)
    story.wear(25.0, 200)
    story.remove("CT-1", 200)
    story.install("CT-2")
    story.remove("CT-2", 0)
    story.install("CT-1")
    projection = fold_device(DEVICE, story.facts())
    cartridge = projection.summary().cartridge
    assert cartridge is not None
    assert (cartridge.cartridge_id, cartridge.actuations, cartridge.wear_pct) == ("CT-1", 200, 25.0)
    assert cartridge.life_used_pct == 25.0


def test_ended_sessions_can_be_forgotten_once_stored() -> None:
    """A runner that stored ended audits drops them; the open session stays."""
    story = session_story(punches=1)
    story.start(LATER_SESSION)
    projection = fold_device(DEVICE, story.facts())
    forgotten = projection.forget_ended_sessions()
    assert [audit.session_id for audit in forgotten] == [SESSION]
    assert forgotten[0].reconciled is True
    assert list(projection.sessions) == [LATER_SESSION]


def test_session_changes_follow_the_session() -> None:
    """Start and punches report the session changed; the end reports its verdict."""
    projection = DeviceProjection(DEVICE)
    changes = projection.apply_all(session_story(punches=2).facts())
    session_changes = [c for c in changes if not isinstance(c, Applied)]
    assert session_changes == [
        SessionChanged(SESSION),
        SessionChanged(SESSION),
        SessionChanged(SESSION),
        SessionClosed(SESSION, reconciled=True),
    ]


def test_a_stored_event_missing_a_field_is_a_finding_not_a_crash() -> None:
    """A body lacking a field its type needs (only an altered store has one) becomes a
    ``malformed`` finding, and the fold carries on."""
    facts = session_story(punches=2).facts()
    bad = facts[3]
    facts[3] = Fact(
        bad.device_id, bad.seq, bad.type, bad.occurred_at, None, bad.hash, bad.prev_hash, {}
    )
    projection = fold_device(DEVICE, facts)
    assert [(f.seq, f.kind) for f in projection.findings] == [(4, FindingKind.MALFORMED)]
    assert projection.applied_through == len(facts)


# --- forecast


def test_needle_life_forecast_runs_at_the_recent_punching_pace() -> None:
    """Four 4-second windows of 10 actuations are 150 a minute of punching (the idle
    time between them does not count), so 960 actuations left are 6.4 minutes."""
    story = Story()
    story.boot()
    story.install(rated=1000)
    story.start()
    for _ in range(4):
        story.punch(10, window_s=4.0)
        story.fault("E-VAC-LOW", "info")  # time passes between windows
    projection = fold_device(DEVICE, story.facts())
    forecast = projection.summary().forecast
    assert forecast is not None
    assert forecast.actuations_left == 960
    assert forecast.actuations_per_minute == pytest.approx(150.0)
    assert forecast.minutes_left == pytest.approx(6.4)
    assert forecast.message() == "about 6 minutes of punching left at the current rate"


def test_no_forecast_without_a_cartridge_and_no_time_without_punching() -> None:
    """No cartridge: no forecast; a fresh cartridge on a device that never punched:
    its whole rating left, with no time to put on it."""
    story = Story()
    story.boot()
    projection = fold_device(DEVICE, story.facts())
    assert projection.forecast() is None
    story.install(rated=1000)
    projection.apply_all(story.facts())
    forecast = projection.forecast()
    assert forecast is not None
    assert (forecast.actuations_left, forecast.minutes_left) == (1000, None)
    assert forecast.message() == "1000 actuations left; no recent punching to time"
