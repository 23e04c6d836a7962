"""The verifier's RFC 9162 proofs against the test-side tree, and its cached
inclusion checker against the RFC's algorithm."""

import hashlib

import pytest
from coreline_verify import (
    InclusionChecker,
    ProofError,
    leaf_hash,
    root_of,
    verify_consistency,
    verify_inclusion,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.evidence_log import MerkleLog


def _log(size: int) -> MerkleLog:
    return MerkleLog(hashlib.sha256(str(n).encode()).digest() for n in range(size))


def _path(proof: list[bytes]) -> str:
    return b"".join(proof).hex()


@pytest.mark.parametrize("size", [1, 2, 3, 5, 8, 13, 64, 100])
def test_every_leaf_is_proved_and_no_other(size: int) -> None:
    """Each leaf's audit path leads to the root; a wrong leaf, index or root fails."""
    log = _log(size)
    root = log.root()
    assert root == root_of(log._levels[0])
    for index in range(size):
        leaf = leaf_hash(hashlib.sha256(str(index).encode()).digest())
        proof = log.inclusion_proof(index)
        verify_inclusion(leaf, index, size, proof, root)
        with pytest.raises(ProofError):
            verify_inclusion(leaf_hash(b"\x00" * 32), index, size, proof, root)
        if size > 1:
            with pytest.raises(ProofError):
                verify_inclusion(leaf, (index + 1) % size, size, proof, root)


@pytest.mark.parametrize("second", [1, 2, 3, 7, 8, 9, 31, 33])
def test_every_earlier_size_is_consistent_with_a_later_one(second: int) -> None:
    """Consistency proofs from every size up to ``second`` verify; a root from
    another tree does not."""
    log = _log(second)
    for first in range(second + 1):
        proof = log.consistency_proof(first)
        verify_consistency(first, log.root(first), second, log.root(), proof)
        if first and first < second:
            with pytest.raises(ProofError):
                verify_consistency(
                    first, _log(first + 1).root(first + 1), second, log.root(), proof
                )
    with pytest.raises(ProofError, match="two different roots for the same size"):
        verify_consistency(second, log.root(), second, _log(second + 1).root(), [])


@settings(max_examples=60, deadline=None)
@given(
    size=st.integers(min_value=1, max_value=300),
    picks=st.lists(st.integers(min_value=0, max_value=299), min_size=1, max_size=40),
    tamper=st.one_of(st.none(), st.integers(min_value=0, max_value=39)),
)
def test_the_cached_checker_agrees_with_the_algorithm(
    size: int, picks: list[int], tamper: int | None
) -> None:
    """For any leaves checked in any order, with any one proof tampered with, the
    cached checker accepts exactly what RFC 9162's algorithm accepts."""
    log = _log(size)
    root = log.root()
    checker = InclusionChecker(size, root)
    for position, pick in enumerate(picks):
        index = pick % size
        event_hash = hashlib.sha256(str(index).encode()).digest()
        proof = log.inclusion_proof(index)
        if position == tamper and proof:
            proof[len(proof) // 2] = hashlib.sha256(proof[len(proof) // 2]).digest()
        try:
            verify_inclusion(leaf_hash(event_hash), index, size, proof, root)
            expected = True
        except ProofError:
            expected = False
        try:
            checker.check(event_hash, index, _path(proof))
            accepted = True
        except ProofError:
            accepted = False
        assert accepted == expected
