"""Folding simulated handpieces: long, realistic streams (cartridge swaps mid-session,
faults, aborts, overuse) fold without a finding, every session reconciles, and
batches delivered out of order give the in-order state."""

import random
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from edge_agent.device import DeviceReading
from schemas import GENESIS_HASH, ChainStatus, seal
from services.projections import DeviceProjection, Fact, fact_from_body, fold_device
from simulation import HandpieceSimulator, SimulatorProfile, fleet_device_ids
from tests.support.streams import timestamp

START = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)
EVENTFUL = SimulatorProfile(
    faults_per_punching_hour=3.0, cartridge_overuse_probability=0.5, abort_probability=0.2
)


def _facts(device_id: str, hours: float, profile: SimulatorProfile) -> list[Fact]:
    """A simulated device's events, sealed into a chain and read back as stored facts."""
    simulator = HandpieceSimulator(device_id, 2026, START, profile)
    readings = [
        r for r in simulator.advance(START + timedelta(hours=hours)) if isinstance(r, DeviceReading)
    ]
    facts: list[Fact] = []
    prev_hash = GENESIS_HASH
    for seq, reading in enumerate(readings, start=1):
        sealed = seal(
            {
                "event_id": str(
                    uuid.uuid5(uuid.NAMESPACE_URL, f"projection-sim:{device_id}:{seq}")
                ),
                "device_id": device_id,
                "seq": seq,
                "type": reading.type,
                "occurred_at": timestamp(reading.occurred_at),
                "schema_version": 1,
                "data": dict(reading.data),
                "prev_hash": prev_hash,
            }
        )
        received = reading.occurred_at + timedelta(milliseconds=250)
        facts.append(fact_from_body(sealed.body, sealed.hash, received))
        prev_hash = sealed.hash
    return facts


def _batches_out_of_order(facts: list[Fact], seed: int) -> list[Fact]:
    """Batches of up to 50 delivered shuffled, a few of them twice."""
    rng = random.Random(seed)
    batches = [facts[i : i + 50] for i in range(0, len(facts), 50)]
    batches += rng.sample(batches, len(batches) // 4)
    rng.shuffle(batches)
    return [fact for batch in batches for fact in batch]


@pytest.mark.parametrize(
    ("device_id", "hours", "profile"),
    [
        *((device_id, 48, SimulatorProfile()) for device_id in fleet_device_ids(2)),
        *((device_id, 12, EVENTFUL) for device_id in fleet_device_ids(3, first=101)),
    ],
)
def test_simulated_streams_fold_cleanly_in_any_batch_order(
    device_id: str, hours: float, profile: SimulatorProfile
) -> None:
    """A simulated device's stream holds no finding, its ended sessions all reconcile
    and verify, the counts add up, and shuffled, repeated batches fold identically."""
    facts = _facts(device_id, hours, profile)
    projection = fold_device(device_id, facts)
    assert projection.findings == []
    assert projection.applied_through == len(facts)
    assert projection.chain_status is ChainStatus.VERIFIED
    audits = projection.session_audits()
    assert len(audits) == projection.lifetime_sessions > 0
    ended = [audit for audit in audits if audit.ended_seq is not None]
    assert len(ended) >= len(audits) - 1
    for audit in ended:
        assert audit.reconciled is True
        assert audit.actuations_counted == audit.actuations_reported
        assert audit.chain_status is ChainStatus.VERIFIED
        assert 0 < audit.coverage_pct < 20
    assert sum(audit.cores_counted for audit in audits) == projection.lifetime_cores
    assert projection.last_received_at == facts[-1].received_at
    for seed in (1, 2):
        assert fold_device(device_id, _batches_out_of_order(facts, seed)) == projection


def test_forgetting_ended_sessions_keeps_the_device_state() -> None:
    """A runner that drops stored sessions as it goes ends with the same device row."""
    facts = _facts("HP-000201", 24, SimulatorProfile())
    whole = fold_device("HP-000201", facts)
    lean = DeviceProjection("HP-000201")
    forgotten = []
    for fact in facts:
        lean.apply(fact)
        forgotten += lean.forget_ended_sessions()
    assert lean.summary() == whole.summary()
    assert forgotten + lean.session_audits() == whole.session_audits()
