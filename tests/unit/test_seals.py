"""Device seals (DESIGN §4.1) without servers: the normative bytes against the
independent sealed vector, decoding, the gateway's seal gate over the in-memory
store, key folds and revocation, and the agent's sealed batches."""

import threading
from pathlib import Path

import orjson
import pytest

from edge_agent.batches import batch_payload
from edge_agent.outbox import OutboxEntry
from gateway.ingest import IngestCore, IngestOptions
from gateway.seal_gate import DEFAULT_REFRESH_S
from schemas import RejectionReason, decode_event_batch, event_hash, seal
from schemas.seals import (
    Keyring,
    fold_keyring,
    from_b64url,
    key_id_of,
    public_key_of_text,
    seal_message,
)
from schemas.streams import device_stream, registry_stream
from seal_keys import PublicSealKey, SealKey, verify_claim
from services.api import commands
from services.audit.verify import DeviceTarget, verify
from services.eventstore import InMemoryEventStore, StreamSeal, load_keyring
from tests.support.sealed_vectors import NOW, SealedVector, SealSource, ingest, load_sealed
from transport import Message


@pytest.fixture
def vector(vectors_dir: Path) -> SealedVector:
    return load_sealed(vectors_dir)


def test_the_vector_key_id_and_signatures_are_reproduced(vector: SealedVector) -> None:
    """key_id is the first 8 bytes of SHA-256 of the raw key, and Ed25519 over the
    normative message bytes gives the vector's signatures exactly."""
    raw = public_key_of_text(vector.public_key)
    assert key_id_of(raw) == vector.key_id == vector.key.key_id
    assert vector.key.public_text == vector.public_key
    for batch in vector.document["batches"]:
        last = batch["events"][-1]
        assert batch["seal"]["seq"] == last["seq"]
        made = vector.key.seal(vector.device_id, last["seq"], last["hash"])
        assert made.sig == batch["seal"]["sig"]
    assert seal_message("HP-000014", 10, "ab" * 32) == (
        b"coreline-seal/v1\nHP-000014\n10\n" + b"ab" * 32 + b"\n"
    )


def test_sealed_and_unsealed_batches_decode(vector: SealedVector) -> None:
    """A sealed batch decodes to its events and a claim that verifies under the
    registered key; an unsealed one decodes with no claim."""
    key = PublicSealKey(from_b64url(vector.public_key))
    for payload in vector.batches():
        decoded = decode_event_batch(vector.device_id, payload)
        assert decoded.rejections == ()
        assert decoded.seal is not None
        assert verify_claim(key, decoded.seal)
    unsealed = dict(vector.document["batches"][0])
    del unsealed["seal"]
    decoded = decode_event_batch(vector.device_id, orjson.dumps(unsealed))
    assert len(decoded.events) == 10
    assert decoded.seal is None


def test_a_malformed_seal_refuses_the_batch_whole(vector: SealedVector) -> None:
    """A seal member that is not a seal (short signature) is a ``signature`` rejection
    of the whole payload, not a schema error."""
    batch = dict(vector.document["batches"][0])
    batch["seal"] = {**batch["seal"], "sig": "AAAA"}
    decoded = decode_event_batch(vector.device_id, orjson.dumps(batch))
    assert decoded.events == ()
    (rejection,) = decoded.rejections
    assert rejection.reason is RejectionReason.SIGNATURE


def test_a_seal_over_an_earlier_event_authenticates_nothing(vector: SealedVector) -> None:
    """A seal whose seq is not the batch's last event has no hash to sign."""
    batch = dict(vector.document["batches"][0])
    first = batch["events"][0]
    batch["seal"] = vector.key.seal(vector.device_id, 1, first["hash"]).model_dump()
    decoded = decode_event_batch(vector.device_id, orjson.dumps(batch))
    assert decoded.seal is not None
    assert decoded.seal.event_hash is None


def test_a_seal_names_the_first_event_of_its_seq(vector: SealedVector) -> None:
    """Two decoded events sharing the sealed seq (a fork in one batch): the seal's
    claim is over the first, as the batch lists them, whichever the device signed."""
    batch = dict(vector.document["batches"][0])
    last = batch["events"][-1]
    fork = {**last, "occurred_at": "2026-11-24T10:00:00.000Z"}
    fork["hash"] = event_hash(fork)
    batch["events"] = [*batch["events"], fork]
    batch["seal"] = vector.key.seal(vector.device_id, last["seq"], fork["hash"]).model_dump()
    decoded = decode_event_batch(vector.device_id, orjson.dumps(batch))
    assert [event.hash for event in decoded.events][-2:] == [last["hash"], fork["hash"]]
    assert decoded.seal is not None
    assert decoded.seal.event_hash == last["hash"]


def test_the_sealed_vector_through_the_ingest_core(vector: SealedVector) -> None:
    """With the key registered, the four sealed batches are stored with their seals;
    each invalid batch is dead-lettered whole with reason ``signature`` and nothing
    else is lost; the platform's ack never covers a refused batch."""
    store = InMemoryEventStore()
    commands.register_key(store, vector.device_id, vector.public_key, "test")
    batches = vector.batches()
    invalid = vector.invalid()
    payloads = [(vector.topic, batches[0])]
    payloads += [(vector.topic, payload) for _, payload in invalid]
    payloads += [(vector.topic, payload) for payload in batches[1:]]
    source = ingest(store, payloads)
    stored = store.read_stream(device_stream(vector.device_id))
    assert [event.seq for event in stored] == list(range(1, 38))
    assert stored[-1].hash == vector.document["expected"]["last_hash"]
    letters = store.dead_letters()
    assert [letter.reason for letter in letters] == ["signature"] * len(invalid)
    assert [letter.raw for letter in letters] == [payload for _, payload in invalid]
    assert [s.seq for s in store.read_seals(device_stream(vector.device_id))] == [10, 20, 30, 37]
    assert len(source.acknowledged) == len(payloads)


def test_invalid_batches_arriving_first_leave_the_stream_at_its_sealed_head(
    vector: SealedVector,
) -> None:
    """A refused batch 11..20 stores nothing: the head stays at 10 until the genuine
    batch comes."""
    store = InMemoryEventStore()
    commands.register_key(store, vector.device_id, vector.public_key, "test")
    payloads = [(vector.topic, vector.batches()[0])]
    payloads += [(vector.topic, payload) for _, payload in vector.invalid()]
    ingest(store, payloads)
    head = store.head(device_stream(vector.device_id))
    assert head is not None
    assert head.seq == 10


def test_a_device_without_a_key_may_send_unsealed_batches(vector: SealedVector) -> None:
    """No key registered: unsealed batches are stored, and a seal sent anyway is not
    stored (no registered key vouches for it)."""
    store = InMemoryEventStore()
    unsealed = [
        orjson.dumps({"device_id": vector.device_id, "events": batch["events"]})
        for batch in vector.document["batches"]
    ]
    ingest(store, [(vector.topic, unsealed[0]), (vector.topic, vector.batches()[1])])
    assert len(store.read_stream(device_stream(vector.device_id))) == 20
    assert store.dead_letters() == []
    assert store.read_seals(device_stream(vector.device_id)) == []


def test_a_key_registered_later_is_picked_up(vector: SealedVector) -> None:
    """The gateway refreshes a device's keys: a few seconds after a registration, its
    unsealed batches are refused, without a restart."""
    store = InMemoryEventStore()
    clock = [0.0]
    source = SealSource([])
    core = IngestCore(lambda: store, source, IngestOptions(), clock=lambda: clock[0])
    stop = threading.Event()
    events = vector.document["batches"]
    first = orjson.dumps({"device_id": vector.device_id, "events": events[0]["events"]})
    second = orjson.dumps({"device_id": vector.device_id, "events": events[1]["events"]})
    source.queued = [Message(vector.topic, first, 1, False, 1, 1, NOW)]
    core.commit(core.collect(timeout_s=0), stop)
    commands.register_key(store, vector.device_id, vector.public_key, "test")
    clock[0] += DEFAULT_REFRESH_S
    source.queued = [Message(vector.topic, second, 1, False, 2, 1, NOW)]
    core.commit(core.collect(timeout_s=0), stop)
    assert [letter.reason for letter in store.dead_letters()] == ["signature"]


def test_revocation_keeps_earlier_seals_and_refuses_later_ones(vector: SealedVector) -> None:
    """Revoking records the highest seq the key sealed; its seals up to there still
    count, a later batch sealed by it is refused."""
    store = InMemoryEventStore()
    commands.register_key(store, vector.device_id, vector.public_key, "test")
    batches = vector.batches()
    ingest(store, [(vector.topic, batch) for batch in batches[:2]])
    commands.revoke_key(store, vector.device_id, vector.key_id, "lost", "test")
    (revoked,) = load_keyring(store, vector.device_id).keys.values()
    assert revoked.revoked
    assert revoked.sealed_through == 20
    assert revoked.covers(20)
    assert not revoked.covers(30)
    ingest(store, [(vector.topic, batch) for batch in batches[2:]])
    assert len(store.read_stream(device_stream(vector.device_id))) == 20
    assert {letter.reason for letter in store.dead_letters()} == {"signature"}


def test_a_second_key_heals_the_gap_after_re_enrolment(vector: SealedVector) -> None:
    """After a revocation, a batch resent under a newly registered key is stored."""
    store = InMemoryEventStore()
    commands.register_key(store, vector.device_id, vector.public_key, "test")
    ingest(store, [(vector.topic, vector.batches()[0])])
    commands.revoke_key(store, vector.device_id, vector.key_id, "board replaced", "test")
    new_key = SealKey.derived("re-enrolled")
    commands.register_key(store, vector.device_id, new_key.public_text, "test")
    batch = vector.document["batches"][1]
    last = batch["events"][-1]
    resealed = {
        **batch,
        "seal": new_key.seal(vector.device_id, last["seq"], last["hash"]).model_dump(),
    }
    ingest(store, [(vector.topic, orjson.dumps(resealed))])
    assert len(store.read_stream(device_stream(vector.device_id))) == 20
    assert [s.key_id for s in store.read_seals(device_stream(vector.device_id))] == [
        vector.key_id,
        new_key.key_id,
    ]


def test_key_events_fold_into_a_keyring(vector: SealedVector) -> None:
    """Registration and revocation are registry events; registering a key twice is
    refused, and the fold passes over other registry events."""
    store = InMemoryEventStore()
    commands.register_device(store, vector.device_id, "CX-2", "test")
    commands.register_key(store, vector.device_id, vector.public_key, "test")
    with pytest.raises(Exception, match="registered for"):
        commands.register_key(store, vector.device_id, vector.public_key, "test")
    types = [e.type for e in store.read_stream(registry_stream(vector.device_id))]
    assert types == ["device.registered", "device.key_registered"]
    assert fold_keyring([]) == Keyring()
    assert load_keyring(store, vector.device_id).enrolled


def test_the_agent_seals_every_batch_over_its_last_event() -> None:
    """The agent's batch carries a seal over its last event's hash that verifies."""
    key = SealKey.derived("agent")
    events = []
    prev = "0" * 64
    for seq in (1, 2, 3):
        event = seal(
            {"event_id": f"00000000-0000-4000-8000-00000000000{seq}", "device_id": "HP-000077",
             "seq": seq, "type": "fault.cleared", "occurred_at": "2026-11-24T09:00:00.000Z",
             "schema_version": 1, "data": {"fault_code": "E-VAC-LOW"}, "prev_hash": prev}
        )  # fmt: skip
        prev = event.hash
        events.append(OutboxEntry("HP-000077", seq, event.wire_json()))
    payload = batch_payload("HP-000077", events, key)
    decoded = decode_event_batch("HP-000077", payload)
    assert decoded.seal is not None
    assert decoded.seal.seal.seq == 3
    assert verify_claim(PublicSealKey(key.public_raw), decoded.seal)
    assert b'"seal"' not in batch_payload("HP-000077", events)


def _verify_lines(store: InMemoryEventStore, device_id: str) -> tuple[bool, list[str]]:
    lines: list[str] = []
    verified = verify(store, DeviceTarget(device_id), lines.append)
    return verified, [" ".join(line.split()) for line in lines]


def test_verify_reports_seal_coverage(vector: SealedVector) -> None:
    """A sealed stream is ``signed through`` its highest verified seal; a stream
    without seals is ``unsigned``."""
    store = InMemoryEventStore()
    commands.register_key(store, vector.device_id, vector.public_key, "test")
    ingest(store, [(vector.topic, payload) for payload in vector.batches()[:3]])
    verified, lines = _verify_lines(store, vector.device_id)
    assert verified
    assert "HP-000014 signed through seq 30" in lines
    plain = InMemoryEventStore()
    unsealed = orjson.dumps({"device_id": vector.device_id, "events": vector.events()[:10]})
    ingest(plain, [(vector.topic, unsealed)])
    verified, lines = _verify_lines(plain, vector.device_id)
    assert verified
    assert "HP-000014 unsigned" in lines


def test_verify_fails_a_stored_seal_that_does_not_verify(vector: SealedVector) -> None:
    """A stored seal whose signature is not the key's over the stored hash fails the
    stream, naming its seq."""
    store = InMemoryEventStore()
    commands.register_key(store, vector.device_id, vector.public_key, "test")
    events = decode_event_batch(vector.device_id, vector.batches()[0]).events
    other = SealKey.derived("forger").seal(vector.device_id, 10, events[-1].hash)
    forged = StreamSeal(vector.device_id, 10, events[-1].hash, vector.key_id, other.sig)
    store.append(events, seals=[forged])
    verified, lines = _verify_lines(store, vector.device_id)
    assert not verified
    assert any(line.startswith("HP-000014 SEAL BROKEN at seq 10") for line in lines), lines


def test_verify_refuses_a_seal_made_after_its_keys_revocation(vector: SealedVector) -> None:
    """Seals up to the revocation's recorded seq still count; one stored beyond it
    (a gateway that had not heard of the revocation yet) fails the stream."""
    store = InMemoryEventStore()
    commands.register_key(store, vector.device_id, vector.public_key, "test")
    ingest(store, [(vector.topic, vector.batches()[0])])
    commands.revoke_key(store, vector.device_id, vector.key_id, "stolen", "test")
    verified, lines = _verify_lines(store, vector.device_id)
    assert verified
    assert "HP-000014 signed through seq 10" in lines
    late = decode_event_batch(vector.device_id, vector.batches()[1])
    assert late.seal is not None
    assert late.seal.event_hash is not None
    seal20 = late.seal.seal
    store.append(
        late.events,
        seals=[StreamSeal(vector.device_id, 20, late.seal.event_hash, seal20.key_id, seal20.sig)],
    )
    verified, lines = _verify_lines(store, vector.device_id)
    assert not verified
    assert any("after its key's revocation" in line for line in lines), lines
