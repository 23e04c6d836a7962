"""The transparency log's mathematics and formats (DESIGN §11), pure: RFC 9162 tree
hashing, compact ranges, inclusion and consistency proofs and their verification,
C2SP signed notes and checkpoints, and a witness's verdict.  No I/O; only
``cryptography`` for Ed25519.  Where the platform keeps its log is
``services.merkle_log``."""

from services.transparency.checkpoint import DEFAULT_ORIGIN, Checkpoint
from services.transparency.hashing import HASH_SIZE, empty_root, leaf_hash, node_hash, split_point
from services.transparency.note import NoteError, Signer, Verifier, key_hash, split_note
from services.transparency.tree import (
    CompactRange,
    Node,
    NodeId,
    NodeLookup,
    consistency_path,
    frontier_ids,
    inclusion_path,
    inclusion_paths,
    needed_nodes,
    range_hash,
    root_at,
    tree_nodes,
)
from services.transparency.verify import verify_consistency, verify_inclusion
from services.transparency.witness import Verdict, judge

__all__ = [
    "DEFAULT_ORIGIN",
    "HASH_SIZE",
    "Checkpoint",
    "CompactRange",
    "Node",
    "NodeId",
    "NodeLookup",
    "NoteError",
    "Signer",
    "Verdict",
    "Verifier",
    "consistency_path",
    "empty_root",
    "frontier_ids",
    "inclusion_path",
    "inclusion_paths",
    "judge",
    "key_hash",
    "leaf_hash",
    "needed_nodes",
    "node_hash",
    "range_hash",
    "root_at",
    "split_note",
    "split_point",
    "tree_nodes",
    "verify_consistency",
    "verify_inclusion",
]
