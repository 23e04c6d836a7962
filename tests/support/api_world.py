"""A small fleet for API and dashboard tests: simulated handpieces' real event
streams in a real store, registered and assigned to two clinics through platform
events, folded by the real projector (alerts included), plus a token per role."""

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from edge_agent.device import DeviceReading
from edge_agent.sealing import chain_readings
from schemas import GENESIS_HASH, SealedEvent, seal, utc_text
from services.api import Role, commands, create_token
from services.eventstore import EventStore, open_event_store, upgrade_schema
from services.projections.read_store import ReadModelStore
from services.projector import Projector
from simulation import HandpieceSimulator, SimulatorProfile

CLINIC_A = "clinic-alpha"
CLINIC_B = "clinic-bravo"
DEVICES = {
    "HP-000101": CLINIC_A,
    "HP-000102": CLINIC_A,
    "HP-000201": CLINIC_B,
    "HP-000301": None,  # reporting, never registered: owned by no clinic
}
START = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
# Busy and fault-prone, so a few simulated hours hold sessions, swaps and alerts.
PROFILE = SimulatorProfile(faults_per_punching_hour=1.5, mean_idle_gap_s=600, min_idle_gap_s=60)


@dataclass
class World:
    database_url: str
    tokens: dict[str, str] = field(default_factory=dict)
    """By name: manufacturer, clinic_a, clinic_b, auditor (fleet-wide), auditor_a."""
    event_counts: dict[str, int] = field(default_factory=dict)

    def clinic_of(self, device_id: str) -> str | None:
        return DEVICES[device_id]


def build_world(database_url: str, hours: float = 8.0, seed: int = 7) -> World:
    """The fleet after ``hours`` of simulated work, projected and ready to query."""
    upgrade_schema(database_url)
    store = open_event_store(database_url)
    read_models = ReadModelStore(database_url)
    world = World(database_url)
    try:
        for device_id, clinic in DEVICES.items():
            if clinic is not None:
                commands.register_device(store, device_id, "CX-2", "fleet-ops")
                commands.assign_device(store, device_id, clinic, "fleet-ops")
            events = simulated_events(device_id, seed, hours)
            store.append(events)
            world.event_counts[device_id] = len(events)
        clock = START + timedelta(hours=hours)
        projector = Projector(store, read_models, clock=lambda: clock)
        while projector.step():
            pass
        engine = read_models.engine
        for name, role, clinic in (
            ("manufacturer", Role.MANUFACTURER, None),
            ("clinic_a", Role.CLINIC, CLINIC_A),
            ("clinic_b", Role.CLINIC, CLINIC_B),
            ("auditor", Role.AUDITOR, None),
            ("auditor_a", Role.AUDITOR, CLINIC_A),
        ):
            _, world.tokens[name] = create_token(engine, role, clinic, name)
    finally:
        store.close()
        read_models.close()
    return world


def project(database_url: str) -> None:
    """Fold whatever was appended since the last projection (an API change, say)."""
    store = open_event_store(database_url)
    read_models = ReadModelStore(database_url)
    try:
        projector = Projector(store, read_models)
        while projector.step():
            pass
    finally:
        store.close()
        read_models.close()


def simulated_events(device_id: str, seed: int, hours: float) -> list[SealedEvent]:
    """A simulated handpiece's events over ``hours``, sealed into one chain."""
    simulator = HandpieceSimulator(device_id, seed, START, PROFILE)
    readings = [
        item
        for item in simulator.advance(START + timedelta(hours=hours))
        if isinstance(item, DeviceReading)
    ]
    # A fault still open at the end, so every device has an open alert to handle.
    fault = {"fault_code": "E-VAC-LOW", "severity": "warning", "message": "vacuum below 40 kPa"}
    last = readings[-1].occurred_at if readings else START
    readings.append(DeviceReading("fault.raised", last + timedelta(seconds=1), fault))
    return chain_readings(
        device_id, readings, lambda seq: uuid.uuid5(uuid.NAMESPACE_URL, f"world:{device_id}:{seq}")
    )


def event_store(world: World) -> EventStore:
    return open_event_store(world.database_url)


@dataclass
class HandpieceWriter:
    """Appends one handpiece's events to a store one at a time, chained and valid, so
    a test can interleave them with platform commands (a reassignment mid-session)."""

    store: EventStore
    device_id: str
    clock: datetime = START
    seq: int = 0
    prev_hash: str = GENESIS_HASH
    cartridge_id: str | None = None
    session_id: str | None = None
    needles: int = 3

    def append(self, type_: str, data: dict[str, object]) -> SealedEvent:
        self.seq += 1
        self.clock += timedelta(seconds=30)
        event = seal({
            "event_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"writer:{self.device_id}:{self.seq}")),
            "device_id": self.device_id, "seq": self.seq, "type": type_,
            "occurred_at": utc_text(self.clock), "schema_version": 1, "data": data,
            "prev_hash": self.prev_hash,
        })  # fmt: skip
        result = self.store.append([event])
        assert result.appended == 1, result
        self.prev_hash = event.hash
        return event

    def install_cartridge(self, cartridge_id: str, lot: str) -> SealedEvent:
        self.cartridge_id = cartridge_id
        return self.append("cartridge.installed", {
            "cartridge_id": cartridge_id, "lot": lot, "needles": self.needles,
            "needle_gauge": 22, "core_diameter_mm": 0.5, "rated_actuations": 100_000,
        })  # fmt: skip

    def start_session(self, session_id: str, operator_ref: str) -> SealedEvent:
        assert self.cartridge_id is not None, "install a cartridge first"
        self.session_id = session_id
        return self.append("session.started", {
            "session_id": session_id, "treatment_area": "lower_face", "area_cm2": 40.0,
            "operator_ref": operator_ref, "cartridge_id": self.cartridge_id,
        })  # fmt: skip

    def punch(self, actuations: int = 4) -> SealedEvent:
        assert self.session_id is not None, "start a session first"
        assert self.cartridge_id is not None
        window_start = utc_text(self.clock)
        return self.append("cores.punched", {
            "session_id": self.session_id, "cartridge_id": self.cartridge_id,
            "actuations": actuations, "cores": actuations * self.needles, "depth_mm": 1.5,
            "window_start": window_start, "window_end": utc_text(self.clock + timedelta(seconds=5)),
        })  # fmt: skip

    def end_session(self, actuations_total: int, cores_total: int) -> SealedEvent:
        assert self.session_id is not None, "start a session first"
        session_id, self.session_id = self.session_id, None
        return self.append("session.ended", {
            "session_id": session_id, "actuations_total": actuations_total,
            "cores_total": cores_total, "duration_s": 600, "reason": "completed",
        })  # fmt: skip

    def fault(self, fault_code: str, message: str, severity: str = "warning") -> SealedEvent:
        return self.append(
            "fault.raised", {"fault_code": fault_code, "severity": severity, "message": message}
        )
