"""The handpiece simulator: valid wire events, a story that adds up, and replays that
match event for event."""

import itertools
import math
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from statistics import mean
from typing import Any

import pytest

from edge_agent.device import DeviceReading
from edge_agent.outbox import wire_bytes
from schemas import (
    GENESIS_HASH,
    MAX_BATCH_BYTES,
    MAX_BATCH_EVENTS,
    Heartbeat,
    SealedEvent,
    decode_event_batch,
    seal,
)
from simulation import HandpieceSimulator, SimulatorProfile, fleet_device_ids
from tests.support.streams import timestamp

START = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)
FLEET_SEED = 2026
FLEET_HOURS = 48
DEFAULT_PROFILE = SimulatorProfile()

Item = DeviceReading | Heartbeat
Fleet = dict[str, list[Item]]


def _simulate(
    device_ids: Iterable[str],
    hours: float,
    *,
    seed: int = FLEET_SEED,
    profile: SimulatorProfile = DEFAULT_PROFILE,
) -> Fleet:
    until = START + timedelta(hours=hours)
    return {
        device_id: HandpieceSimulator(device_id, seed, START, profile).advance(until)
        for device_id in device_ids
    }


def _events(items: Iterable[Item]) -> list[DeviceReading]:
    return [item for item in items if isinstance(item, DeviceReading)]


def _moment(item: Item) -> datetime:
    return item.occurred_at if isinstance(item, DeviceReading) else item.sampled_at


@pytest.fixture(scope="module", name="fleet")
def fleet_fixture() -> Fleet:
    """Twenty handpieces over two simulated days with the default profile."""
    return _simulate(fleet_device_ids(20), FLEET_HOURS)


@pytest.fixture(scope="module", name="eventful")
def eventful_fixture() -> Fleet:
    """Four handpieces over twelve hours that fault, abort and overuse often."""
    profile = SimulatorProfile(
        faults_per_punching_hour=3.0, cartridge_overuse_probability=0.5, abort_probability=0.2
    )
    return _simulate(fleet_device_ids(4, first=101), 12, profile=profile)


@pytest.fixture(scope="module", name="audits")
def audits_fixture(fleet: Fleet) -> dict[str, "Audit"]:
    """Each device's story folded into sessions, cartridges and faults."""
    return {device_id: audit(_events(items)) for device_id, items in fleet.items()}


# A fold over one device's readings that keeps what the platform's projections need
# and notes every reading that contradicts what came before it.


@dataclass
class SessionFacts:
    session_id: str
    area_cm2: float
    started_at: datetime
    punched_actuations: int = 0
    punched_cores: int = 0
    cored_mm2: float = 0.0
    ended: dict[str, Any] | None = None
    ended_at: datetime | None = None
    critical_fault: bool = False

    @property
    def coverage_pct(self) -> float:
        return self.cored_mm2 / (self.area_cm2 * 100) * 100


@dataclass
class CartridgeFacts:
    cartridge_id: str
    needles: int
    core_area_mm2: float
    rated_actuations: int
    actuations: int = 0
    wear_pct: float = 0.0
    insertion_force_n: float = 0.0
    removed_reason: str | None = None

    @property
    def life_used(self) -> float:
        return max(self.actuations / self.rated_actuations, self.wear_pct / 100)


Data = Mapping[str, Any]


class Audit:
    """Sessions, cartridges and faults of one device, and the rules its story broke."""

    def __init__(self) -> None:
        self.sessions: list[SessionFacts] = []
        self.cartridges: list[CartridgeFacts] = []
        self.raised: list[tuple[str, str]] = []
        self.cleared: list[str] = []
        self.open_faults: set[str] = set()
        self.problems: list[str] = []
        self.installed: CartridgeFacts | None = None
        self.session: SessionFacts | None = None
        self.fed = 0
        self._rules: dict[str, Callable[[Data, datetime], str | None]] = {
            "agent.started": lambda data, at: None,
            "cartridge.installed": self._installed,
            "cartridge.removed": self._removed,
            "session.started": self._session_started,
            "cores.punched": self._punched,
            "needle.wear": self._wear,
            "session.ended": self._session_ended,
            "fault.raised": self._fault_raised,
            "fault.cleared": self._fault_cleared,
            "interlock.engaged": self._interlock_engaged,
            "interlock.released": lambda data, at: None,
        }
        self.interlocks: list[str] = []

    def feed(self, reading: DeviceReading) -> None:
        if self.fed == 0 and reading.type != "agent.started":
            self.problems.append(f"the story begins with {reading.type}")
        self.fed += 1
        problem = self._rules[reading.type](reading.data, reading.occurred_at)
        if problem:
            self.problems.append(f"{timestamp(reading.occurred_at)} {reading.type}: {problem}")

    def _cartridge_named(self, data: Data) -> CartridgeFacts | None:
        installed = self.installed
        return installed if installed and installed.cartridge_id == data["cartridge_id"] else None

    def _session_named(self, data: Data) -> SessionFacts | None:
        session = self.session
        return session if session and session.session_id == data["session_id"] else None

    def _installed(self, data: Data, at: datetime) -> str | None:
        problem = "a cartridge is already installed" if self.installed else None
        core_area_mm2 = math.pi * (data["core_diameter_mm"] / 2) ** 2
        self.installed = CartridgeFacts(
            data["cartridge_id"], data["needles"], core_area_mm2, data["rated_actuations"]
        )
        self.cartridges.append(self.installed)
        return problem

    def _removed(self, data: Data, at: datetime) -> str | None:
        cartridge = self._cartridge_named(data)
        if cartridge is None:
            return "does not name the installed cartridge"
        cartridge.removed_reason, self.installed = data["reason"], None
        if data["actuations_total"] != cartridge.actuations:
            return "actuations_total differs from the punches on the cartridge"
        return None

    def _session_started(self, data: Data, at: datetime) -> str | None:
        problem = "a session is already open" if self.session else None
        if self._cartridge_named(data) is None:
            problem = "does not name the installed cartridge"
        self.session = SessionFacts(data["session_id"], data["area_cm2"], at)
        self.sessions.append(self.session)
        return problem

    def _punched(self, data: Data, at: datetime) -> str | None:
        cartridge, session = self._cartridge_named(data), self._session_named(data)
        if cartridge is None or session is None:
            return "does not name the installed cartridge and the open session"
        cartridge.actuations += data["actuations"]
        session.punched_actuations += data["actuations"]
        session.punched_cores += data["cores"]
        session.cored_mm2 += data["cores"] * cartridge.core_area_mm2
        window_start = datetime.fromisoformat(data["window_start"])
        window_end = datetime.fromisoformat(data["window_end"])
        if data["cores"] != data["actuations"] * cartridge.needles:
            return "cores differ from actuations × needles"
        if session.critical_fault:
            return "punching after a critical fault"
        if not timedelta(seconds=1) <= window_end - window_start <= timedelta(seconds=2):
            return f"a punch window of {window_end - window_start}"
        # Reported as the window closes: catches window text drifting off occurred_at.
        if not timedelta(0) <= at - window_end <= timedelta(milliseconds=100):
            return f"reported {at - window_end} after its window ended"
        return None

    def _wear(self, data: Data, at: datetime) -> str | None:
        cartridge = self._cartridge_named(data)
        if cartridge is None:
            return "does not name the installed cartridge"
        if data["actuations_total"] != cartridge.actuations:
            return "actuations_total differs from the punches on the cartridge"
        wear, force = data["wear_pct"], data["insertion_force_n"]
        went_down = wear < cartridge.wear_pct or force < cartridge.insertion_force_n
        cartridge.wear_pct, cartridge.insertion_force_n = wear, force
        return "wear or insertion force went down" if went_down else None

    def _session_ended(self, data: Data, at: datetime) -> str | None:
        session = self._session_named(data)
        if session is None:
            return "does not name the open session"
        session.ended, session.ended_at, self.session = dict(data), at, None
        totals = (data["actuations_total"], data["cores_total"])
        if totals != (session.punched_actuations, session.punched_cores):
            return "session totals differ from the sum of its punches"
        return None

    def _fault_raised(self, data: Data, at: datetime) -> str | None:
        self.raised.append((data["fault_code"], data["severity"]))
        self.open_faults.add(data["fault_code"])
        if self.session is not None and data["severity"] == "critical":
            self.session.critical_fault = True
        return None

    def _fault_cleared(self, data: Data, at: datetime) -> str | None:
        self.cleared.append(data["fault_code"])
        if data["fault_code"] not in self.open_faults:
            return "clears a fault that is not open"
        self.open_faults.discard(data["fault_code"])
        return None

    def _interlock_engaged(self, data: Data, at: datetime) -> str | None:
        # Unconfigured, a handpiece only warns of a cartridge past its rating.
        self.interlocks.append(data["interlock"])
        cartridge = self._cartridge_named(data)
        if data["interlock"] != "cartridge_life" or data["mode"] != "warn":
            return f"{data['interlock']} {data['mode']} without configuration"
        if cartridge is None or cartridge.actuations < cartridge.rated_actuations:
            return "warns of a cartridge within its rating"
        return None


def audit(readings: Iterable[DeviceReading]) -> Audit:
    facts = Audit()
    for reading in readings:
        facts.feed(reading)
    return facts


# --- the wire


def _seal_chain(device_id: str, readings: list[DeviceReading]) -> list[SealedEvent]:
    chain: list[SealedEvent] = []
    prev_hash = GENESIS_HASH
    for seq, reading in enumerate(readings, start=1):
        sealed = seal(
            {
                "event_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"coreline-sim:{device_id}:{seq}")),
                "device_id": device_id,
                "seq": seq,
                "type": reading.type,
                "occurred_at": timestamp(reading.occurred_at),
                "schema_version": 1,
                "data": dict(reading.data),
                "prev_hash": prev_hash,
            }
        )
        chain.append(sealed)
        prev_hash = sealed.hash
    return chain


def _batches(device_id: str, chain: list[SealedEvent]) -> Iterator[bytes]:
    """Batch payloads within both limits of the protocol, as the agent sends them."""
    head = b'{"device_id":"' + device_id.encode() + b'","events":['
    wires: list[bytes] = []
    size = len(head) + 2
    for event in chain:
        wire = wire_bytes(event)
        if wires and (len(wires) == MAX_BATCH_EVENTS or size + len(wire) + 1 > MAX_BATCH_BYTES):
            yield head + b",".join(wires) + b"]}"
            wires, size = [], len(head) + 2
        wires.append(wire)
        size += len(wire) + 1
    if wires:
        yield head + b",".join(wires) + b"]}"


def test_events_decode_as_chained_wire_batches(fleet: Fleet, eventful: Fleet) -> None:
    """Sealed into chains and sent as batches, simulated events decode unchanged: two
    days of ordinary handpieces and every fault, abort and overuse path."""
    streams = [*itertools.islice(fleet.items(), 6), *eventful.items()]
    for device_id, items in streams:
        chain = _seal_chain(device_id, _events(items))
        decoded: list[SealedEvent] = []
        for payload in _batches(device_id, chain):
            batch = decode_event_batch(device_id, payload)
            assert batch.rejections == ()
            decoded.extend(batch.events)
        assert [event.hash for event in decoded] == [event.hash for event in chain]
        assert all(
            later.prev_hash == earlier.hash for earlier, later in itertools.pairwise(decoded)
        )


def test_heartbeats_are_valid_periodic_telemetry(fleet: Fleet) -> None:
    """Heartbeats survive their own wire form, come every 60 s, with plausible values."""
    for items in fleet.values():
        samples = [item for item in items if isinstance(item, Heartbeat)]
        assert len(samples) >= FLEET_HOURS * 60 - 1
        for sample in samples:
            assert Heartbeat.model_validate_json(sample.model_dump_json()) == sample
            assert sample.rssi_dbm is not None
            assert -150 <= sample.rssi_dbm <= 0
            assert sample.battery_pct is not None
            assert 0 <= sample.battery_pct <= 100
            assert sample.temperature_c is not None
            assert 15 <= sample.temperature_c <= 60
        gaps = {b.sampled_at - a.sampled_at for a, b in itertools.pairwise(samples)}
        assert gaps == {timedelta(seconds=60)}


def test_readings_come_in_time_order(fleet: Fleet) -> None:
    """Events and heartbeats together never go back in time."""
    for items in fleet.values():
        moments = [_moment(item) for item in items]
        assert moments == sorted(moments)
        assert moments[-1] <= START + timedelta(hours=FLEET_HOURS)


def test_story_keeps_the_cross_event_rules(audits: dict[str, Audit]) -> None:
    """Punches name the open session and installed cartridge, cores = actuations ×
    needles, session and cartridge totals equal their punches, wear only grows."""
    for device_id, facts in audits.items():
        assert facts.problems == [], device_id
        assert len(facts.sessions) >= 20


def test_sessions_last_about_half_an_hour(audits: dict[str, Audit]) -> None:
    """Completed sessions take 20 to 45 minutes or so, about 30 on average, and report
    their own duration."""
    completed = []
    for facts in audits.values():
        for session in facts.sessions:
            if session.ended is None or session.ended_at is None:
                continue
            elapsed = (session.ended_at - session.started_at).total_seconds()
            assert session.ended["duration_s"] == pytest.approx(elapsed)
            if session.ended["reason"] == "completed":
                completed.append(elapsed / 60)
    assert len(completed) > 500
    assert min(completed) >= 20
    assert max(completed) <= 46
    assert 27 <= mean(completed) <= 35


def test_coverage_centres_on_five_percent_with_rare_overshoots(audits: dict[str, Audit]) -> None:
    """Coverage averages about 5 %; a small share of sessions goes past the 8 % policy."""
    coverage = [
        session.coverage_pct
        for facts in audits.values()
        for session in facts.sessions
        if session.ended is not None and session.ended["reason"] == "completed"
    ]
    over_policy = sum(1 for pct in coverage if pct > 8.0) / len(coverage)
    assert 3.5 <= mean(coverage) <= 6.5
    assert 0 < over_policy < 0.1


def test_worn_cartridges_are_swapped(audits: dict[str, Audit]) -> None:
    """Cartridges are removed once worn (life used ≥ 95 %), a few sessions each, and a
    fresh one follows; only a rare cartridge runs past its rating."""
    removed = [
        cartridge
        for facts in audits.values()
        for cartridge in facts.cartridges
        if cartridge.removed_reason == "worn"
    ]
    assert len(removed) > 100
    assert all(cartridge.life_used >= 0.95 for cartridge in removed)
    assert all(facts.cartridges[-1].removed_reason is None for facts in audits.values())
    sessions = sum(len(facts.sessions) for facts in audits.values())
    assert 2 <= sessions / len(removed) <= 6
    overused = [c for c in removed if c.actuations > c.rated_actuations]
    assert len(overused) / len(removed) < 0.1


def test_cartridges_run_past_their_rating_only_when_the_profile_says_so() -> None:
    """With no overuse cartridges never pass their rating; with certain overuse every
    worn cartridge does."""
    for probability in (0.0, 1.0):
        profile = SimulatorProfile(cartridge_overuse_probability=probability)
        fleet = _simulate(fleet_device_ids(4), 24, profile=profile)
        worn = [
            cartridge
            for items in fleet.values()
            for cartridge in audit(_events(items)).cartridges
            if cartridge.removed_reason == "worn"
        ]
        assert worn
        past_rating = [c.actuations > c.rated_actuations for c in worn]
        assert all(past_rating) if probability else not any(past_rating)


def test_faults_are_raised_and_cleared(audits: dict[str, Audit]) -> None:
    """The default fleet sees a few faults; each is cleared (unless still open at the end)."""
    raised = [fault for facts in audits.values() for fault in facts.raised]
    cleared = [code for facts in audits.values() for code in facts.cleared]
    assert 1 <= len(raised) <= 40
    assert cleared
    for facts in audits.values():
        assert len(facts.open_faults) <= 1
        assert len(facts.cleared) == len(facts.raised) - len(facts.open_faults)


def test_critical_faults_end_the_session(eventful: Fleet) -> None:
    """A critical fault mid-session ends it with reason ``fault``; lesser ones let it go on."""
    audits = [audit(_events(items)) for items in eventful.values()]
    assert all(facts.problems == [] for facts in audits)
    severities = {severity for facts in audits for _, severity in facts.raised}
    assert severities == {"info", "warning", "critical"}
    ended = [s for facts in audits for s in facts.sessions if s.ended is not None]
    assert any(s.critical_fault for s in ended)
    for session in ended:
        assert session.ended is not None
        assert (session.ended["reason"] == "fault") == session.critical_fault


def test_critical_faults_are_serviced_before_they_clear(eventful: Fleet) -> None:
    """A jammed needle costs the cartridge and a stalled motor restarts the handpiece,
    both before the fault clears."""
    recoveries: dict[str, list[list[str]]] = {}
    for items in eventful.values():
        events = _events(items)
        for index, event in enumerate(events):
            if event.type != "fault.raised" or event.data["severity"] != "critical":
                continue
            code = event.data["fault_code"]
            cleared = {"fault_code": code}
            kinds = []
            for later in events[index + 1 :]:
                if later.data == cleared:
                    break
                kinds.append(f"{later.type}:{later.data.get('reason', '')}")
            recoveries.setdefault(code, []).append(kinds)
    assert {"E-NEEDLE-JAM", "E-MOTOR-STALL"} <= recoveries.keys()
    for kinds in recoveries["E-NEEDLE-JAM"]:
        assert kinds[-2:] == ["cartridge.removed:fault", "cartridge.installed:"]
    for kinds in recoveries["E-MOTOR-STALL"]:
        assert kinds[-1] == "agent.started:"
    assert all(kinds[0] == "needle.wear:" for group in recoveries.values() for kinds in group)


def test_same_seed_replays_the_same_story() -> None:
    """Two simulators with the same seed and device report identical readings."""
    first = _simulate(["HP-000042"], 12)
    assert first == _simulate(["HP-000042"], 12)


def test_different_seeds_and_devices_tell_different_stories() -> None:
    """Another seed, or another device under the same seed, changes the story."""
    readings = _simulate(["HP-000042"], 6)["HP-000042"]
    assert readings != _simulate(["HP-000042"], 6, seed=FLEET_SEED + 1)["HP-000042"]
    neighbour = _simulate(["HP-000043"], 6)["HP-000043"]
    assert _events(readings)[1].data != _events(neighbour)[1].data


def test_small_steps_yield_what_one_big_step_does() -> None:
    """Advancing in many uneven steps, some landing exactly on events, changes nothing."""
    device_id, hours = "HP-000007", 10
    whole = _simulate([device_id], hours)[device_id]
    simulator = HandpieceSimulator(device_id, FLEET_SEED, START)
    stepped: list[Item] = []
    moment = START - timedelta(seconds=1)
    for index, item in enumerate(whole[::37]):
        stepped.extend(simulator.advance(moment))
        stepped.extend(simulator.advance(moment))
        stepped.extend(simulator.advance(_moment(item)))
        moment = _moment(item) + timedelta(milliseconds=1 + 997 * index % 5_000)
    stepped.extend(simulator.advance(START + timedelta(hours=hours)))
    assert stepped == whole
    ticking = HandpieceSimulator(device_id, FLEET_SEED, START)
    ticks = [
        item
        for tick in range(hours * 3600 // 13 + 1)
        for item in ticking.advance(START + timedelta(seconds=13 * tick))
    ]
    ticks.extend(ticking.advance(START + timedelta(hours=hours)))
    assert ticks == whole


def test_counters_match_what_was_reported() -> None:
    """The counters count the readings handed out so far, no more."""
    simulator = HandpieceSimulator("HP-000003", FLEET_SEED, START)
    events = _events(simulator.advance(START + timedelta(hours=8)))
    counters = simulator.counters
    kinds = [event.type for event in events]
    assert counters.events == len(events)
    assert counters.sessions == kinds.count("session.started") > 0
    assert counters.cartridges == kinds.count("cartridge.installed") > 1
    assert counters.faults == kinds.count("fault.raised")
    assert counters.heartbeats == 8 * 60


def test_fleet_device_ids_are_serials() -> None:
    """Fleet ids are zero-padded serials from ``first``."""
    assert fleet_device_ids(3) == ["HP-000001", "HP-000002", "HP-000003"]
    assert fleet_device_ids(2, first=123) == ["HP-000123", "HP-000124"]
    assert fleet_device_ids(0) == []


@pytest.mark.parametrize(
    "changes",
    [
        {"cartridge_overuse_probability": 1.5},
        {"faults_per_punching_hour": -1.0},
        {"mean_coverage_pct": 9.0},
        {"session_minutes": (30.0, 20.0, 45.0)},
        {"mean_idle_gap_s": 60.0},
        {"heartbeat_interval_s": 0.0},
        {"swap_at_life_used": 1.2},
        {"firmware_versions": ()},
    ],
)
def test_profile_refuses_impossible_settings(changes: dict[str, Any]) -> None:
    """A profile that cannot describe a real fleet is refused when made."""
    with pytest.raises(ValueError):  # noqa: PT011 - each setting has its own message
        SimulatorProfile(**changes)


def test_simulator_needs_an_aware_start() -> None:
    """A naive start time is ambiguous, so it is refused."""
    with pytest.raises(ValueError, match="timezone-aware"):
        HandpieceSimulator("HP-000001", 1, datetime(2026, 11, 24, 8, 0))  # noqa: DTZ001
