"""RFC 9162 §2.1 tree hashing (DESIGN §11, normative): domain-separated SHA-256.

Leaves and interior nodes hash with different one-byte prefixes, so no interior
node can ever be passed off as a leaf (the second-preimage attack on plain Merkle
trees)."""

import hashlib
from typing import Final

HASH_SIZE: Final = 32
_LEAF_PREFIX: Final = b"\x00"
_NODE_PREFIX: Final = b"\x01"


def leaf_hash(event_hash: bytes) -> bytes:
    """The leaf of one stored event: SHA-256(0x00 || the 32 raw bytes of its hash)."""
    if len(event_hash) != HASH_SIZE:
        raise ValueError(f"an event hash is {HASH_SIZE} bytes, not {len(event_hash)}")
    return hashlib.sha256(_LEAF_PREFIX + event_hash).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """An interior node: SHA-256(0x01 || left || right)."""
    return hashlib.sha256(_NODE_PREFIX + left + right).digest()


def split_point(size: int) -> int:
    """The largest power of two smaller than ``size`` (``size`` ≥ 2): where RFC 9162's
    MTH splits a tree of ``size`` leaves into its left and right subtrees."""
    if size < 2:
        raise ValueError(f"a tree of {size} leaves has no split")
    return 1 << ((size - 1).bit_length() - 1)


def empty_root() -> bytes:
    """The root of the empty tree: SHA-256 of nothing."""
    return hashlib.sha256(b"").digest()
