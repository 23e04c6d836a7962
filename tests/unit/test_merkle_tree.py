"""The log's tree hashing and proofs (RFC 9162 §2.1): the protocol vector's root, a
straightforward MTH, and proofs that verify exactly when nothing was altered."""

import hashlib
import json
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from services.transparency import (
    CompactRange,
    NodeId,
    consistency_path,
    empty_root,
    inclusion_path,
    inclusion_paths,
    leaf_hash,
    needed_nodes,
    node_hash,
    root_at,
    tree_nodes,
    verify_consistency,
    verify_inclusion,
)

VECTOR = Path(__file__).resolve().parents[1] / "protocol-vectors" / "HP-000014.sealed.json"


def _leaves(count: int) -> list[bytes]:
    return [leaf_hash(hashlib.sha256(str(number).encode()).digest()) for number in range(count)]


def _mth(leaves: list[bytes]) -> bytes:
    """RFC 9162's definition, recursively, as the RFC writes it."""
    if not leaves:
        return empty_root()
    if len(leaves) == 1:
        return leaves[0]
    split = 1
    while split * 2 < len(leaves):
        split *= 2
    return node_hash(_mth(leaves[:split]), _mth(leaves[split:]))


def _path(index: int, leaves: list[bytes]) -> list[bytes]:
    """PATH(m, D[n]) of RFC 9162 §2.1.3.1, recursively, as the RFC writes it."""
    if len(leaves) == 1:
        return []
    split = 1
    while split * 2 < len(leaves):
        split *= 2
    if index < split:
        return [*_path(index, leaves[:split]), _mth(leaves[split:])]
    return [*_path(index - split, leaves[split:]), _mth(leaves[:split])]


def _flip(value: bytes, bit: int) -> bytes:
    changed = bytearray(value)
    changed[bit // 8 % len(value)] ^= 1 << bit % 8
    return bytes(changed)


def test_the_protocol_vectors_tree_root_is_rebuilt() -> None:
    """The independent implementation's root over HP-000014's events, leaves in seq
    order, is the root the compact range and the stored nodes both give."""
    vector = json.loads(VECTOR.read_text())
    events = sorted((event for batch in vector["batches"] for event in batch["events"]),
                    key=lambda event: event["seq"])  # fmt: skip
    compact, nodes = tree_nodes(leaf_hash(bytes.fromhex(event["hash"])) for event in events)
    assert compact.size == vector["tree"]["size"]
    assert compact.root().hex() == vector["tree"]["root_hex"]
    assert root_at(compact.size, nodes.__getitem__).hex() == vector["tree"]["root_hex"]


def test_leaf_and_node_hashes_are_domain_separated() -> None:
    """A leaf is SHA-256(0x00 || hash), a node SHA-256(0x01 || left || right)."""
    event = bytes(range(32))
    assert leaf_hash(event) == hashlib.sha256(b"\x00" + event).digest()
    assert node_hash(event, event) == hashlib.sha256(b"\x01" + event + event).digest()


@given(st.integers(min_value=0, max_value=300))
def test_compact_range_root_is_the_rfc_mth(size: int) -> None:
    """Appending leaf by leaf gives MTH at every size, and the stored complete subtrees
    give it again, for this size and every smaller one."""
    leaves = _leaves(size)
    compact, nodes = tree_nodes(leaves)
    assert compact.root() == _mth(leaves)
    assert root_at(size, nodes.__getitem__) == _mth(leaves)
    if size:
        assert root_at(size // 2 + 1, nodes.__getitem__) == _mth(leaves[: size // 2 + 1])


@given(st.integers(min_value=1, max_value=300))
def test_a_compact_range_loads_from_stored_nodes_and_carries_on(size: int) -> None:
    """The frontier read back from stored nodes appends exactly as the one kept in memory."""
    leaves = _leaves(size + 3)
    _, nodes = tree_nodes(leaves[:size])
    loaded = CompactRange.load(size, nodes.__getitem__)
    for leaf in leaves[size:]:
        loaded.append(leaf)
    assert loaded.root() == _mth(leaves)


@given(st.data())
def test_every_inclusion_proof_verifies_and_any_alteration_fails(data: st.DataObject) -> None:
    """An audit path for any leaf of any tree verifies; a changed leaf, index, root or
    path element, or a path with one hash missing or added, does not."""
    size = data.draw(st.integers(min_value=1, max_value=200), "size")
    index = data.draw(st.integers(min_value=0, max_value=size - 1), "index")
    leaves = _leaves(size)
    compact, nodes = tree_nodes(leaves)
    root, path = compact.root(), inclusion_path(index, size, nodes.__getitem__)
    assert verify_inclusion(leaves[index], index, size, path, root)
    bit = data.draw(st.integers(min_value=0, max_value=255), "bit")
    assert not verify_inclusion(_flip(leaves[index], bit), index, size, path, root)
    assert not verify_inclusion(leaves[index], index, size, path, _flip(root, bit))
    if path:
        spot = data.draw(st.integers(min_value=0, max_value=len(path) - 1), "spot")
        altered = [*path[:spot], _flip(path[spot], bit), *path[spot + 1 :]]
        assert not verify_inclusion(leaves[index], index, size, altered, root)
        assert not verify_inclusion(leaves[index], index, size, path[:-1], root)
    assert not verify_inclusion(leaves[index], index, size, [*path, root], root)
    if size > 1:
        other = (index + 1) % size
        assert not verify_inclusion(leaves[index], other, size, path, root)


@given(st.data())
def test_every_consistency_proof_verifies_and_any_alteration_fails(data: st.DataObject) -> None:
    """A proof between any two sizes verifies; a changed old or new root, a changed
    or dropped proof hash, or another old size does not."""
    new_size = data.draw(st.integers(min_value=1, max_value=200), "new size")
    old_size = data.draw(st.integers(min_value=1, max_value=new_size), "old size")
    leaves = _leaves(new_size)
    compact, nodes = tree_nodes(leaves)
    old_root, new_root = root_at(old_size, nodes.__getitem__), compact.root()
    proof = consistency_path(old_size, new_size, nodes.__getitem__)
    assert verify_consistency(old_size, new_size, old_root, new_root, proof)
    bit = data.draw(st.integers(min_value=0, max_value=255), "bit")
    assert not verify_consistency(old_size, new_size, _flip(old_root, bit), new_root, proof)
    assert not verify_consistency(old_size, new_size, old_root, _flip(new_root, bit), proof)
    if proof:
        spot = data.draw(st.integers(min_value=0, max_value=len(proof) - 1), "spot")
        altered = [*proof[:spot], _flip(proof[spot], bit), *proof[spot + 1 :]]
        assert not verify_consistency(old_size, new_size, old_root, new_root, altered)
        assert not verify_consistency(old_size, new_size, old_root, new_root, proof[:-1])
    if old_size < new_size - 1:
        assert not verify_consistency(old_size + 1, new_size, old_root, new_root, proof)


@given(st.data())
def test_paths_of_many_leaves_are_the_rfcs_paths(data: st.DataObject) -> None:
    """``inclusion_paths`` over any leaves of any tree (in any order, repeated) gives
    each exactly the RFC's recursive PATH, as does ``inclusion_path``."""
    size = data.draw(st.integers(min_value=1, max_value=300), "size")
    indexes = data.draw(st.lists(st.integers(min_value=0, max_value=size - 1), max_size=40))
    leaves = _leaves(size)
    _, nodes = tree_nodes(leaves)
    expected = [_path(index, leaves) for index in indexes]
    assert inclusion_paths(indexes, size, nodes.__getitem__) == expected
    assert [inclusion_path(index, size, nodes.__getitem__) for index in indexes] == expected


def test_a_proof_reads_logarithmically_many_stored_nodes() -> None:
    """An inclusion or consistency proof in a tree of a million leaves touches a few
    dozen stored nodes, never a rescan."""
    size = 1_000_003
    inclusion = needed_nodes(lambda lookup: inclusion_path(777_777, size, lookup))
    consistency = needed_nodes(lambda lookup: consistency_path(654_321, size, lookup))
    assert len(inclusion) <= 2 * size.bit_length()
    assert len(consistency) <= 2 * size.bit_length()
    assert all(isinstance(node, NodeId) for node in inclusion | consistency)
