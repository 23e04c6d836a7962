"""Proof verification exactly as RFC 9162 §2.1.3.2 and §2.1.4.2 write it: what a
witness or an auditor runs, needing nothing but the hashes they are given."""

from collections.abc import Sequence

from services.transparency.hashing import node_hash


def verify_inclusion(
    leaf: bytes, index: int, size: int, path: Sequence[bytes], root: bytes
) -> bool:
    """Whether ``path`` proves ``leaf`` is leaf ``index`` of the tree of ``size`` with ``root``."""
    if not 0 <= index < size:
        return False
    fn, sn, folded = index, size - 1, leaf
    for sibling in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            folded = node_hash(sibling, folded)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            folded = node_hash(folded, sibling)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and folded == root


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    """Whether ``proof`` shows the tree of ``old_size`` with ``old_root`` is a prefix of
    the tree of ``new_size`` with ``new_root``."""
    if old_size == new_size:
        return not proof and old_root == new_root
    if not 0 < old_size < new_size or not proof:
        return False
    path = list(proof)
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)  # the old tree is itself a complete subtree
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    old_folded = new_folded = path[0]
    for hash_ in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            old_folded = node_hash(hash_, old_folded)
            new_folded = node_hash(hash_, new_folded)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            new_folded = node_hash(new_folded, hash_)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and old_folded == old_root and new_folded == new_root
