"""A large fleet's read models, bulk-loaded for ``bench.api``.

One simulated handpiece is folded by the real ``DeviceProjection``; its device
summary, snapshot and session audits are the templates every generated row is
varied from, so the rows carry the documents the projector writes (same keys, same
sizes), only many more of them than a simulation could fold in a benchmark's time.
Rows go in with ``COPY``, sessions in start order, as a live projector appends them.
"""

import random
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import orjson
import psycopg

from edge_agent.device import DeviceReading
from schemas import GENESIS_HASH, seal, utc_text
from services.projections.device import DeviceProjection
from services.projections.facts import fact_from_body
from services.projections.read_store import document, snapshot
from simulation import HandpieceSimulator

DAYS: Final = 90
STATUSES: Final = {"ok": 70, "cartridge_low": 12, "service_due": 6, "fault": 6,
                   "cartridge_exhausted": 3}  # fmt: skip
FIRMWARE: Final = {"2.4.1": 70, "2.3.7": 25, "2.2.0": 5}
_PRESENCE: Final = {True: 90, False: 7, None: 3}
_FAULT: Final = {"fault_code": "E-VAC-LOW", "severity": "warning",
                 "message": "vacuum below 40 kPa"}  # fmt: skip
_DEVICE_COLUMNS: Final = (
    "device_id", "clinic_id", "status", "firmware_version", "last_seen", "summary", "snapshot",
    "open_session_id", "waiting_for_seq", "updated_at",
)  # fmt: skip
SESSION_COLUMNS: Final = (
    "session_id", "device_id", "clinic_id", "treatment_area", "area_cm2", "started_at",
    "ended_at", "cores_counted", "cores_reported", "reconciled", "coverage_pct", "chain_status",
    "audit", "cartridge_id", "lot", "ended_hash", "cartridge_ids", "core_diameters_mm",
)  # fmt: skip
"""As the projector writes them (``started_seq`` and ``ended_seq`` the database derives
from the audit document)."""
SEAL_EVERY: Final = 1_000
"""Seqs between two of a device's stored seals (one per sealed batch, DESIGN §4.1)."""


@dataclass(frozen=True)
class Templates:
    """What the real fold wrote for one simulated handpiece."""

    summary: dict[str, Any]
    snapshot: bytes
    audits: list[dict[str, Any]]


@dataclass
class Fleet:
    """What the benchmark needs to know about the loaded rows to query them."""

    now: datetime
    device_ids: list[str]
    clinics: list[str]
    statuses: list[str]
    sessions: int = 0
    newest_first: dict[int, tuple[datetime, str]] = field(default_factory=dict)
    """(started_at, session_id) of sampled sessions, by rank in newest-first order."""
    load_seconds: float = 0.0


def fold_templates(hours: float = 24.0) -> Templates:
    """Fold a day of a simulated handpiece, as the projector would."""
    start = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
    device_id = "HP-000000"
    simulator = HandpieceSimulator(device_id, 7, start)
    readings = [r for r in simulator.advance(start + timedelta(hours=hours))
                if isinstance(r, DeviceReading)]  # fmt: skip
    projection, prev_hash = DeviceProjection(device_id), GENESIS_HASH
    for seq, reading in enumerate(readings, start=1):
        event = seal({
            "event_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"bench-api:{seq}")),
            "device_id": device_id, "seq": seq, "type": reading.type,
            "occurred_at": utc_text(reading.occurred_at), "schema_version": 1,
            "data": dict(reading.data), "prev_hash": prev_hash,
        })  # fmt: skip
        prev_hash = event.hash
        projection.apply(fact_from_body(event.body, event.hash, reading.occurred_at))
    audits = [document(audit) for audit in projection.forget_ended_sessions()]
    return Templates(document(projection.summary()), snapshot(projection), audits)


def _weighted(rng: random.Random, weights: dict[Any, int], count: int) -> list[Any]:
    return rng.choices(list(weights), weights=list(weights.values()), k=count)


def device_rows(
    fleet: Fleet, templates: Templates, rng: random.Random, clinic_of: dict[str, str | None]
) -> Iterator[tuple[tuple[Any, ...], tuple[Any, ...] | None, tuple[Any, ...] | None]]:
    """(read_devices row, read_registry row or None, presence row or None) per device."""
    count = len(fleet.device_ids)
    firmware = _weighted(rng, FIRMWARE, count)
    presence = _weighted(rng, _PRESENCE, count)
    for index, device_id in enumerate(fleet.device_ids):
        status, online, clinic_id = fleet.statuses[index], presence[index], clinic_of[device_id]
        seen = fleet.now - timedelta(
            seconds=rng.uniform(0, 86_400 * (30 if online is False else 1))
        )
        summary = dict(templates.summary)
        cartridge = dict(summary["cartridge"])
        rated = cartridge["rated_actuations"]
        used = {"cartridge_low": 0.92, "cartridge_exhausted": 1.02}.get(status, rng.uniform(0, 0.8))
        cartridge.update(actuations=int(rated * used), reported_actuations=int(rated * used),
                         life_used_pct=used * 100, wear_pct=round(used * 100, 1),
                         over_rating=used > 1)  # fmt: skip
        lifetime = rng.randrange(50_000, 400_000)
        open_session = (
            str(uuid.UUID(int=rng.getrandbits(128), version=4)) if rng.random() < 0.03 else None
        )
        summary.update(
            device_id=device_id, firmware_version=firmware[index], cartridge=cartridge,
            last_occurred_at=seen.isoformat(), last_received_at=seen.isoformat(),
            applied_through=lifetime // 8, lifetime_actuations=lifetime,
            lifetime_cores=lifetime * 3, lifetime_sessions=lifetime // 500,
            actuations_since_service=lifetime % 250_000 if status != "service_due" else 251_000,
            open_faults=[_FAULT | {"raised_at": seen.isoformat(), "raised_seq": lifetime // 8}]
            if status == "fault" else [],
            open_session_id=open_session, status=status,
            attention=[] if status == "ok" else [status],
        )  # fmt: skip
        device = (device_id, clinic_id, status, firmware[index], seen,
                  orjson.dumps(summary).decode(), templates.snapshot, open_session, None,
                  seen)  # fmt: skip
        # Devices of no clinic: half registered and unassigned, half never registered.
        registered = clinic_id is not None or index % 2 == 0
        model = "CX-3" if index % 4 == 0 else "CX-2"
        registry = (device_id, clinic_id, model, True) if registered else None
        yield device, registry, None if online is None else (device_id, online, seen)


def session_rows(
    fleet: Fleet,
    templates: Templates,
    rng: random.Random,
    clinic_of: dict[str, str | None],
    sampled: set[int],
) -> Iterator[tuple[Any, ...]]:
    """``fleet.sessions`` sessions over ``DAYS`` days, oldest first; busy devices more."""
    count, span = fleet.sessions, DAYS * 86_400.0
    activity = [rng.uniform(0.3, 1.7) for _ in fleet.device_ids]
    devices = rng.choices(fleet.device_ids, weights=activity, k=count)
    offsets = sorted(rng.random() * span for _ in range(count))
    first = fleet.now - timedelta(days=DAYS)
    for index, (device_id, offset) in enumerate(zip(devices, offsets, strict=True)):
        template = templates.audits[index % len(templates.audits)]
        session_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        started = first + timedelta(seconds=offset)
        rank = count - 1 - index
        if rank in sampled:
            fleet.newest_first[rank] = (started, session_id)
        scale = rng.uniform(0.6, 1.4)
        counted = int(template["cores_counted"] * scale)
        actuations = int(template["actuations_counted"] * scale)
        audit = dict(template)
        seq = rng.randrange(1_000, 50_000)
        # As many cartridges as the folded session used (a swap: two), new ids.
        cartridges = [f"CT-{rng.getrandbits(40):010X}" for _ in template["cartridge_ids"]]
        audit.update(session_id=session_id, device_id=device_id, started_at=started.isoformat(),
                     started_seq=seq, actuations_counted=actuations, cores_counted=counted,
                     coverage_pct=template["coverage_pct"] * scale,
                     cartridge_ids=cartridges)  # fmt: skip
        ended: datetime | None = None
        if fleet.now - started < timedelta(minutes=40) and rng.random() < 0.5:
            audit.update(ended_at=None, ended_seq=None, end_reason=None,
                         actuations_reported=None, cores_reported=None, reconciled=None,
                         chain_status="incomplete", ended_hash=None)  # fmt: skip
        else:
            ended = started + timedelta(minutes=rng.uniform(20, 45))
            # One session in 200 reports other totals than it counted.
            reported = counted + (3 if rng.random() < 0.005 else 0)
            audit.update(ended_at=ended.isoformat(), ended_seq=seq + actuations // 10,
                         actuations_reported=actuations, cores_reported=reported,
                         reconciled=reported == counted, chain_status="verified",
                         ended_hash=f"{rng.getrandbits(256):064x}")  # fmt: skip
        yield (
            session_id, device_id, clinic_of[device_id], audit["treatment_area"],
            audit["area_cm2"], started, ended, counted, audit["cores_reported"],
            audit["reconciled"], audit["coverage_pct"], audit["chain_status"],
            orjson.dumps(audit).decode(), cartridges[0], audit["lot"], audit["ended_hash"],
            ";".join(cartridges), _diameters_cell(audit["core_diameters_mm"]),
        )  # fmt: skip


def _diameters_cell(diameters: Sequence[float | None]) -> str | None:
    """As ``SessionAudit.core_diameters_cell`` writes it."""
    return ";".join("" if d is None else repr(d) for d in diameters) or None


def seal_rows(fleet: Fleet, rng: random.Random) -> Iterator[tuple[Any, ...]]:
    """Stored seals: each device's stream sealed every ``SEAL_EVERY`` seqs up to a
    point of its own (none for one device in ten), so that the export's per-session
    seal probe finds both signed and unsigned sessions in a table of realistic size."""
    now = fleet.now
    for device_id in fleet.device_ids:
        reach = 0 if rng.random() < 0.1 else rng.randrange(0, 50_000)
        for seq in range(SEAL_EVERY, reach + 1, SEAL_EVERY):
            yield device_id, seq, "c237fe2fd2925b9b", "sig", now


def _copy(
    connection: psycopg.Connection[Any],
    table: str,
    columns: Sequence[str],
    rows: Iterable[tuple[Any, ...] | None],
) -> None:
    with (
        connection.cursor() as cursor,
        cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy,
    ):
        for row in rows:
            if row is not None:
                copy.write_row(row)


def load_fleet(
    url: str, devices: int, clinics: int, sessions: int, sampled: set[int], seed: int = 11
) -> Fleet:
    """Generate and COPY the fleet into the (created, empty) read-model tables."""
    rng = random.Random(seed)
    templates = fold_templates()
    device_ids = [f"HP-{n:06d}" for n in range(1, devices + 1)]
    clinic_ids = [f"clinic-{n:03d}" for n in range(clinics)]
    # Two devices in a hundred are not assigned to any clinic.
    clinic_of = {d: None if rng.random() < 0.02 else rng.choice(clinic_ids) for d in device_ids}
    fleet = Fleet(datetime.now(UTC), device_ids, clinic_ids,
                  _weighted(rng, STATUSES, devices), sessions)  # fmt: skip
    started = time.perf_counter()
    with psycopg.connect(url) as connection:
        rows = list(device_rows(fleet, templates, rng, clinic_of))
        _copy(connection, "read_devices", _DEVICE_COLUMNS, [row[0] for row in rows])
        _copy(connection, "read_registry", ("device_id", "clinic_id", "model", "registered"),
              [row[1] for row in rows])  # fmt: skip
        _copy(connection, "presence", ("device_id", "online", "changed_at"),
              [row[2] for row in rows])  # fmt: skip
        _copy(connection, "read_sessions", SESSION_COLUMNS,
              session_rows(fleet, templates, rng, clinic_of, sampled))  # fmt: skip
        _copy(connection, "seals", ("stream_id", "seq", "key_id", "sig", "stored_at"),
              seal_rows(fleet, rng))  # fmt: skip
    with psycopg.connect(url, autocommit=True) as connection:
        # What autovacuum does to a table after a load: statistics and the visibility map.
        connection.execute("VACUUM (ANALYZE)")
    fleet.load_seconds = time.perf_counter() - started
    return fleet
