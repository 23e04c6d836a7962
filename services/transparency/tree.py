"""The log's shape: complete subtrees named by ``NodeId``, the compact range that
makes appends O(log n), and the recursive RFC 9162 definitions (MTH, PATH,
SUBPROOF) evaluated over stored complete subtrees.

Every subtree the RFC's recursion visits is either complete and aligned (a node
that was stored once the tree grew past it, and never changes) or the right edge
of the tree, which splits into complete ones again.  So a root or a proof for any
size up to the current one is a handful of stored node reads, never a rescan.
"""

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from services.transparency.hashing import empty_root, node_hash, split_point


class NodeId(NamedTuple):
    """The ``number``-th complete subtree of ``2**level`` leaves: leaves
    ``number << level`` onwards (level 0: a leaf)."""

    level: int
    number: int


class Node(NamedTuple):
    id: NodeId
    hash: bytes


NodeLookup = Callable[[NodeId], bytes]
"""The stored hash of a complete subtree (raises ``KeyError`` when it is not stored)."""


@dataclass(slots=True)
class CompactRange:
    """The roots of the complete subtrees a tree of ``size`` leaves decomposes into
    (one per set bit of ``size``, largest first): all an append needs."""

    size: int
    roots: list[Node]

    @classmethod
    def empty(cls) -> "CompactRange":
        return cls(0, [])

    @classmethod
    def load(cls, size: int, lookup: NodeLookup) -> "CompactRange":
        """The compact range of a stored tree of ``size`` leaves."""
        return cls(size, [Node(node_id, lookup(node_id)) for node_id in frontier_ids(size)])

    def append(self, leaf: bytes) -> list[Node]:
        """Add one leaf hash; the complete subtrees it completes, the leaf first."""
        made = [Node(NodeId(0, self.size), leaf)]
        self.roots.append(made[0])
        # Two trailing roots of one level are siblings: merge them, as a binary carry.
        while len(self.roots) >= 2 and self.roots[-1].id.level == self.roots[-2].id.level:
            right = self.roots.pop()
            left = self.roots.pop()
            parent = Node(
                NodeId(left.id.level + 1, left.id.number >> 1), node_hash(left.hash, right.hash)
            )
            self.roots.append(parent)
            made.append(parent)
        self.size += 1
        return made

    def root(self) -> bytes:
        """MTH of the whole tree: the roots folded from the right."""
        if not self.roots:
            return empty_root()
        folded = self.roots[-1].hash
        for node in reversed(self.roots[:-1]):
            folded = node_hash(node.hash, folded)
        return folded


def frontier_ids(size: int) -> list[NodeId]:
    """The complete subtrees a tree of ``size`` leaves decomposes into, left to right."""
    found, start = [], 0
    for level in range(size.bit_length() - 1, -1, -1):
        if size >> level & 1:
            found.append(NodeId(level, start >> level))
            start += 1 << level
    return found


def range_hash(start: int, end: int, lookup: NodeLookup) -> bytes:
    """MTH of leaves ``start``..``end - 1``, a range the RFC recursion visits."""
    count = end - start
    if count == 0:
        return empty_root()
    if count & (count - 1) == 0 and start % count == 0:
        return lookup(NodeId(count.bit_length() - 1, start // count))
    split = split_point(count)
    return node_hash(
        range_hash(start, start + split, lookup), range_hash(start + split, end, lookup)
    )


def root_at(size: int, lookup: NodeLookup) -> bytes:
    """MTH of the first ``size`` leaves."""
    return range_hash(0, size, lookup)


def inclusion_path(index: int, size: int, lookup: NodeLookup) -> list[bytes]:
    """PATH(index, D[0:size]) of RFC 9162 §2.1.3.1: the audit path, leaf side first."""
    return inclusion_paths([index], size, lookup)[0]


def inclusion_paths(indexes: Sequence[int], size: int, lookup: NodeLookup) -> list[list[bytes]]:
    """``inclusion_path`` of each of ``indexes``, climbing from the leaf.

    At each level the leaf's ancestor is subtree ``fn`` of ``2**level`` leaves; its
    sibling is the complete subtree ``fn - 1`` when ``fn`` is odd, ``fn + 1`` when
    that one is complete, or the tree's incomplete right edge beyond it; the last
    subtree of a level with no sibling is promoted (RFC 9162's split at the largest
    power of two below n gives exactly this tree).  Two leaves share every level above
    the highest bit in which their indexes differ, so a leaf after its neighbour
    recomputes about two levels, not all of them."""
    last = size - 1
    depth = last.bit_length()
    by_level: list[bytes | None] = [None] * depth
    edges: dict[int, bytes] = {}
    paths: list[list[bytes]] = []
    previous: int | None = None
    for index in indexes:
        if not 0 <= index < size:
            raise ValueError(f"leaf {index} is not in a tree of {size}")
        redo = depth if previous is None else min(depth, (index ^ previous).bit_length())
        for level in range(redo):
            fn, sn = index >> level, last >> level
            if fn & 1:
                by_level[level] = lookup(NodeId(level, fn - 1))
            elif fn == sn:
                by_level[level] = None  # promoted: no sibling at this level
            elif (fn + 2) << level <= size:
                by_level[level] = lookup(NodeId(level, fn + 1))
            else:
                edge = edges.get(level)
                if edge is None:
                    edge = edges[level] = range_hash((fn + 1) << level, size, lookup)
                by_level[level] = edge
        previous = index
        paths.append([node for node in by_level if node is not None])
    return paths


def consistency_path(old_size: int, new_size: int, lookup: NodeLookup) -> list[bytes]:
    """PROOF(old_size, D[0:new_size]) of RFC 9162 §2.1.4.1 (empty for equal sizes)."""
    if not 0 < old_size <= new_size:
        raise ValueError(f"no consistency proof from {old_size} to {new_size}")
    proof: list[bytes] = []
    start, end, boundary, whole = 0, new_size, old_size, True
    while boundary != end - start:
        split = split_point(end - start)
        if boundary <= split:
            proof.append(range_hash(start + split, end, lookup))
            end = start + split
        else:
            proof.append(range_hash(start, start + split, lookup))
            start, boundary, whole = start + split, boundary - split, False
    if not whole:
        proof.append(range_hash(start, end, lookup))
    proof.reverse()
    return proof


def needed_nodes(compute: Callable[[NodeLookup], object]) -> set[NodeId]:
    """Which stored nodes ``compute`` reads: run it once against a recorder, so an
    adapter can fetch them all in one query before computing for real."""
    seen: set[NodeId] = set()

    def record(node_id: NodeId) -> bytes:
        seen.add(node_id)
        return bytes(32)

    compute(record)
    return seen


def tree_nodes(leaves: Iterable[bytes]) -> tuple[CompactRange, dict[NodeId, bytes]]:
    """Every complete subtree of a tree built from ``leaves`` (for tests and rebuilds
    held in memory)."""
    compact = CompactRange.empty()
    nodes: dict[NodeId, bytes] = {}
    for leaf in leaves:
        nodes.update(compact.append(leaf))
    return compact, nodes
