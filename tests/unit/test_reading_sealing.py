"""Readings sealed into a chain: the same events whether sealed at once or in parts."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from edge_agent.device import DeviceReading
from edge_agent.sealing import chain_readings, seal_reading
from schemas import GENESIS_HASH, Heartbeat
from schemas.chain import ChainLink, ChainStatus, verify_chain
from simulation import HandpieceSimulator

START = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)


def _event_id(seq: int) -> uuid.UUID:
    return uuid.uuid5(uuid.NAMESPACE_URL, f"sealing:{seq}")


def _readings(hours: float) -> list[DeviceReading]:
    simulator = HandpieceSimulator("HP-000001", 3, START)
    advanced = simulator.advance(START + timedelta(hours=hours))
    return [reading for reading in advanced if not isinstance(reading, Heartbeat)]


def test_a_chain_verifies_from_its_bytes() -> None:
    chain = chain_readings("HP-000001", _readings(2), _event_id)
    assert len(chain) > 20
    links = [ChainLink(e.seq, e.body, e.hash, str(e.event_id)) for e in chain]
    verdict = verify_chain(links)
    assert (verdict.status, verdict.last_seq) == (ChainStatus.VERIFIED, len(chain))
    assert [e.event_id for e in chain] == [_event_id(seq) for seq in range(1, len(chain) + 1)]


def test_a_chain_sealed_in_parts_is_the_chain_sealed_at_once() -> None:
    readings = _readings(2)
    whole = chain_readings("HP-000001", readings, _event_id)
    head = chain_readings("HP-000001", readings[:7], _event_id)
    tail = chain_readings(
        "HP-000001", readings[7:], _event_id, after_seq=head[-1].seq, after_hash=head[-1].hash
    )
    assert [e.body for e in head + tail] == [e.body for e in whole]
    assert whole[0].prev_hash == GENESIS_HASH


def test_a_reading_the_wire_schema_refuses_is_not_sealed() -> None:
    reading = DeviceReading("cores.punched", START, {"actuations": -1})
    with pytest.raises(ValidationError):
        seal_reading("HP-000001", 1, GENESIS_HASH, reading, _event_id(1))
