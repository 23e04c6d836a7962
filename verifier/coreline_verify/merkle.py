"""RFC 9162 §2.1 Merkle tree hashing and proof verification.

Leaf hash = SHA-256(0x00 || the 32 raw bytes of an event's ``hash``); interior node =
SHA-256(0x01 || left || right).  ``verify_inclusion`` and ``verify_consistency`` are
the RFC's algorithms (§2.1.3.2, §2.1.4.2) step for step.
"""

import binascii
import hashlib
from collections.abc import Sequence
from typing import Any, Final

_sha256: Final = hashlib.sha256
_unhex: Final = binascii.a2b_hex
_LEAF: Final = b"\x00"
_NODE: Final = b"\x01"
HASH_BYTES: Final = 32
_HEX_CHARS: Final = 2 * HASH_BYTES


class ProofError(ValueError):
    """A proof that does not verify, with the reason."""


def leaf_hash(event_hash: bytes) -> bytes:
    return hashlib.sha256(_LEAF + event_hash).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(_NODE + left + right).digest()


def split_path(text: Any) -> list[bytes]:
    """A proof as a bundle carries it: the hex (64 lowercase digits) of each 32-byte
    node, concatenated in order."""
    if not isinstance(text, str) or len(text) % _HEX_CHARS:
        raise ProofError("is not a whole number of 64-digit hex hashes")
    try:
        return [bytes.fromhex(text[at : at + _HEX_CHARS]) for at in range(0, len(text), _HEX_CHARS)]
    except ValueError as error:
        raise ProofError("is not hex") from error


def root_of(leaves: Sequence[bytes]) -> bytes:
    """MTH(D[n]) over leaf hashes (RFC 9162 §2.1.1): the empty tree hashes to
    SHA-256 of nothing."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    level = list(leaves)
    while len(level) > 1:
        # Pairing left to right and carrying an odd last node up unchanged builds the
        # same tree as splitting at the largest power of two below n.
        paired = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return level[0]


def verify_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """RFC 9162 §2.1.3.2: raise ``ProofError`` unless ``proof`` leads from ``leaf``
    at ``index`` to ``root`` of the tree of ``size`` leaves."""
    if not 0 <= index < size:
        raise ProofError(f"is for log index {index}, outside a tree of size {size}")
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise ProofError("is longer than the path")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0 or r != root:
        raise ProofError("does not lead to the checkpoint's root")


def _consistent_without_path(
    first_size: int, first_root: bytes, second_size: int, second_root: bytes, proof: Sequence[bytes]
) -> bool:
    """The cases with nothing to hash: raise if they fail, ``True`` if they pass."""
    if first_size > second_size:
        raise ProofError(f"size {first_size} is larger than size {second_size}")
    if first_size == second_size:
        # No proof is needed, or possible: the same size must mean the same root.
        if proof or first_root != second_root:
            raise ProofError(f"two different roots for the same size {first_size}")
        return True
    if first_size == 0:
        if proof:
            raise ProofError("a proof from the empty tree must be empty")
        return True
    if not proof:
        raise ProofError("the consistency proof is empty")
    return False


def verify_consistency(
    first_size: int,
    first_root: bytes,
    second_size: int,
    second_root: bytes,
    proof: Sequence[bytes],
) -> None:
    """RFC 9162 §2.1.4.2: raise ``ProofError`` unless the tree of ``second_size``
    leaves extends the tree of ``first_size`` leaves."""
    if _consistent_without_path(first_size, first_root, second_size, second_root, proof):
        return
    path = list(proof)
    if first_size & (first_size - 1) == 0:
        path.insert(0, first_root)
    fn, sn = first_size - 1, second_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("the consistency proof is longer than the path")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0 or fr != first_root or sr != second_root:
        raise ProofError(
            f"the consistency proof does not lead from size {first_size} to size {second_size}"
        )


def _ascii(path: Any) -> bytes:
    if type(path) is not str or not path.isascii():
        raise ProofError("is not a whole number of 64-digit hex hashes")
    return path.encode("ascii")


class InclusionChecker:
    """Inclusion proofs of many leaves against one checkpoint, as exact as
    ``verify_inclusion`` and several times cheaper for leaves that come in index
    order, as a stream's events do.

    Every pair of nodes a verified proof hashed together is a pair of sibling nodes
    of the checkpoint's tree.  When a later proof is about to hash the same pair (same
    level, same index, same two values) and continues with the same remaining path
    (verified from that pair's parent on), the full algorithm would repeat the very
    computation already made: stop there, one hash sooner than a match on the parent
    would.  For the leaf after a left leaf, whose path starts with that left leaf and
    goes on as its path does, this settles the proof with no node hashed at all.
    Anything else takes the full algorithm.  Only the latest pair per level is kept,
    so memory does not grow with the bundle.
    """

    def __init__(self, size: int, root: bytes) -> None:
        self._size = size
        self._root = root
        # Per level: (index of the left node, left, right, text, where the path on
        # from their parent starts and ends in it) of the latest pair hashed there on
        # a verified path.  The text is kept whole: no copy per level.
        self._pairs: list[tuple[int, bytes, bytes, bytes, int, int] | None] = [None] * (
            size.bit_length() + 1
        )

    @property
    def tree(self) -> tuple[int, bytes]:
        """The size and root hash proofs are checked against."""
        return self._size, self._root

    def check(
        self, event_hash: bytes, index: int, path: Any, start: int = 0, end: int | None = None
    ) -> None:
        """Raise ``ProofError`` unless the event with ``event_hash`` is leaf ``index``;
        ``path`` is its audit path as the bundle writes it (lowercase hex of the
        nodes, concatenated; as ``bytes`` or ``str``), or ``path[start:end]`` of
        ``bytes`` (an event line, say: the proof is not copied out of it).  Only the
        nodes the check hashes are decoded: the rest is compared as text with a
        path already verified."""
        if not 0 <= index < self._size:
            raise ProofError(
                f"is for log index {index}, outside the checkpoint's size {self._size}"
            )
        if type(path) is not bytes:
            path = _ascii(path)
        if end is None:
            end = len(path)
        used = start
        if (end - used) % _HEX_CHARS or used < 0 or end > len(path):
            raise ProofError("is not a whole number of 64-digit hex hashes")
        # RFC 9162 §2.1.3.2 with ``level`` counting every halving, so that (level,
        # fn) names the same node of the tree whichever leaf the climb started from.
        r = _sha256(_LEAF + event_hash).digest()
        fn, sn, level = index, self._size - 1, 0
        pairs = self._pairs
        while used != end:
            if sn == 0:
                raise self._failed("is longer than the path")
            try:
                p = _unhex(path[used : used + _HEX_CHARS])
            except ValueError:
                raise self._failed("is not hex") from None
            used += _HEX_CHARS
            if fn & 1 or fn == sn:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
                    level += 1
                left_index, left, right = fn - 1, p, r
            else:
                left_index, left, right = fn, r, p
            pair = pairs[level]
            if (
                pair is not None
                and pair[0] == left_index
                and pair[2] == right
                and pair[1] == left
                and pair[5] - pair[4] == end - used
                and path.endswith(pair[3][pair[4] : pair[5]], used, end)
            ):
                return  # the same pair, then the same verified path on
            # Noted before it is verified: every note is forgotten if it fails.
            pairs[level] = (left_index, left, right, path, used, end)
            r = _sha256(_NODE + left + right).digest()
            fn >>= 1
            sn >>= 1
            level += 1
        if sn != 0 or r != self._root:
            raise self._failed("does not lead to the checkpoint's root")

    def _failed(self, reason: str) -> ProofError:
        # Pairs of a path that failed were noted on the way up: forget them all.
        self._pairs = [None] * len(self._pairs)
        return ProofError(reason)
