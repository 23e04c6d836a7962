"""The transparency log on every database adapter (DESIGN §11): every stored event,
device and platform streams, becomes a leaf in the store's global order; each
event's inclusion proof verifies against the signed checkpoint, successive
checkpoints are consistent, and a log rebuilt from the events has the same roots."""

from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select

from services.api import commands
from services.eventstore import Cursor, EventStore
from services.merkle_log import LogKeeper, MerkleLog, NotInLogError, log_nodes, rebuild_log
from services.transparency import (
    Checkpoint,
    Signer,
    leaf_hash,
    tree_nodes,
    verify_consistency,
    verify_inclusion,
)
from tests.support.streams import device_stream
from tests.support.tamper import as_attacker

ORIGIN = "coreline/log/v1"


@pytest.fixture
def merkle_log(store_url: str) -> Iterator[MerkleLog]:
    opened = MerkleLog.open(store_url)
    yield opened
    opened.close()


@pytest.fixture
def signer() -> Signer:
    return Signer(ORIGIN, Ed25519PrivateKey.generate())


def _grow(store: EventStore, round_: int) -> None:
    """One more round of ingest: two devices' next events and a platform event."""
    for device_id in ("HP-000101", "HP-000102"):
        head = store.head(device_id)
        first = 1 if head is None else head.seq + 1
        prev = None if head is None else head.hash
        events = (device_stream(device_id, 7 + round_, first_seq=first, prev_hash=prev)
                  if prev else device_stream(device_id, 7 + round_))  # fmt: skip
        store.append(events)
    commands.register_device(store, f"HP-0002{round_:02d}", "CX-2", "fleet-ops")


def _all_records(store: EventStore) -> list[tuple[str, int, str]]:
    found, cursor = [], Cursor.START
    while batch := store.read_records(cursor, 50):
        found += [(record.stream_id, record.seq, record.hash) for record in batch]
        cursor = batch[-1].cursor
    return found


def test_every_event_is_proven_in_every_checkpoint_and_checkpoints_stay_consistent(
    store: EventStore, merkle_log: MerkleLog, signer: Signer
) -> None:
    """After each round of appends the keeper logs every event and signs; each event
    stored so far has an inclusion proof that verifies against the signed root, and
    each checkpoint is consistent with the one before."""
    keeper = LogKeeper(store, merkle_log, signer, batch_size=13)
    previous: Checkpoint | None = None
    for round_ in range(4):
        _grow(store, round_)
        keeper.catch_up()
        stored = keeper.sign_if_due(now=True)
        assert stored is not None
        checkpoint = Checkpoint.parse(signer.verifier.verify(stored.note))
        records = _all_records(store)
        assert checkpoint.size == len(records)
        assert {stream for stream, _, _ in records} >= {"HP-000101", "registry:HP-000200"}
        for stream_id, seq, event_hash in records:
            proof = merkle_log.inclusion(stream_id, seq, checkpoint.size)
            leaf = leaf_hash(bytes.fromhex(event_hash))
            assert verify_inclusion(
                leaf, proof.leaf_index, checkpoint.size, proof.path, checkpoint.root
            ), (stream_id, seq)
        if previous is not None:
            proof_between = merkle_log.consistency(previous.size, checkpoint.size)
            assert verify_consistency(
                previous.size, checkpoint.size, previous.root, checkpoint.root, proof_between
            )
        previous = checkpoint
    # The same root as a tree built in memory over the global order.
    compact, _ = tree_nodes(leaf_hash(bytes.fromhex(hash_)) for _, _, hash_ in _all_records(store))
    assert previous is not None
    assert compact.root() == previous.root
    assert len(merkle_log.checkpoints()) == 4


def test_a_streams_proofs_read_a_page_at_a_time_equal_its_proofs_one_by_one(
    store: EventStore, merkle_log: MerkleLog, signer: Signer
) -> None:
    """``inclusions`` (what an export reads) gives, page by page, each event of a
    range exactly the proof ``inclusion`` gives it, at an earlier size too, and stops
    at the first event the tree of that size lacks."""
    keeper = LogKeeper(store, merkle_log, signer, batch_size=13)
    for round_ in range(3):
        _grow(store, round_)
        keeper.catch_up()
    size = merkle_log.size()
    head = store.head("HP-000101")
    assert head is not None
    for tree_size in (size, size - 12):  # the last round ends with 101, 102, registry
        paged = list(merkle_log.inclusions("HP-000101", 2, head.seq, tree_size, page=4))
        one_by_one = []
        for seq in range(2, head.seq + 1):
            try:
                one_by_one.append((seq, merkle_log.inclusion("HP-000101", seq, tree_size)))
            except NotInLogError:
                break
        assert paged == one_by_one
        assert len(paged) >= 5
    assert len(paged) < head.seq - 1  # the smaller tree lacks the stream's newest


def test_a_log_rebuilt_from_the_events_has_the_same_roots_and_nodes(
    store: EventStore, merkle_log: MerkleLog, signer: Signer
) -> None:
    """Rebuilding from nothing but the events gives every kept checkpoint's root again,
    and the very same stored nodes."""
    keeper = LogKeeper(store, merkle_log, signer)
    for round_ in range(3):
        _grow(store, round_)
        keeper.catch_up()
        keeper.sign_if_due(now=True)
    with merkle_log.engine.connect() as connection:
        nodes_before = connection.execute(select(log_nodes).order_by("level", "node_index")).all()
    result = rebuild_log(store, merkle_log, batch_size=17)
    assert result.applied
    assert result.contradicted == ()
    for kept in merkle_log.checkpoints():
        assert merkle_log.root_at(kept.size) == kept.root
    with merkle_log.engine.connect() as connection:
        nodes_after = connection.execute(select(log_nodes).order_by("level", "node_index")).all()
    assert nodes_after == nodes_before
    assert merkle_log.position() == store.read_records(Cursor.START, 10_000)[-1].cursor
    _grow(store, 3)
    assert keeper.catch_up() > 0  # the keeper carries on from the rebuilt log


def test_a_rebuild_that_contradicts_a_kept_checkpoint_changes_nothing_unless_told(
    store: EventStore, store_url: str, merkle_log: MerkleLog, signer: Signer
) -> None:
    """An event altered in the database makes the rebuilt root differ: the rebuild is
    rolled back, naming the contradicted checkpoint; told to discard it, it goes on."""
    keeper = LogKeeper(store, merkle_log, signer)
    _grow(store, 0)
    keeper.catch_up()
    kept = keeper.sign_if_due(now=True)
    assert kept is not None
    as_attacker(
        store_url,
        ("UPDATE events SET hash = %s WHERE stream_id = %s AND seq = %s",
         ("ab" * 32, "HP-000101", 3)),
    )  # fmt: skip
    refused = rebuild_log(store, merkle_log)
    assert not refused.applied
    assert [found.size for found in refused.contradicted] == [kept.size]
    assert merkle_log.root_at(kept.size) == kept.root
    forced = rebuild_log(store, merkle_log, discard_contradicted=True)
    assert forced.applied
    assert merkle_log.checkpoints() == []
    assert merkle_log.root_at(kept.size) != kept.root


def test_checkpoints_are_signed_at_most_once_per_interval_and_only_on_growth(
    store: EventStore, merkle_log: MerkleLog, signer: Signer
) -> None:
    """The first checkpoint is signed at once, the next only after the interval and
    only if the log grew in between."""
    now = [1000.0]
    keeper = LogKeeper(store, merkle_log, signer, sign_every_s=10.0, clock=lambda: now[0])
    _grow(store, 0)
    keeper.catch_up()
    assert keeper.sign_if_due() is not None
    _grow(store, 1)
    keeper.catch_up()
    now[0] += 9.9
    assert keeper.sign_if_due() is None
    now[0] += 0.2
    assert keeper.sign_if_due() is not None
    now[0] += 60
    assert keeper.sign_if_due() is None  # no growth, nothing new to sign
    assert [kept.size for kept in merkle_log.checkpoints()] == sorted(
        {kept.size for kept in merkle_log.checkpoints()}
    )
    assert len(merkle_log.checkpoints()) == 2
