"""The platform's transparency log (DESIGN §11): one Merkle tree over every stored
event in the store's global order, kept in the store's database (leaves,
complete-subtree nodes, every signed checkpoint), maintained by the projector
(``LogKeeper``), rebuildable from the events alone (``rebuild_log``), and checked
from outside by witnesses (``witness``).  The mathematics and formats are
``services.transparency``'s."""

from services.merkle_log.errors import LogKeyError, MerkleLogError, NotInLogError
from services.merkle_log.keeper import SIGN_EVERY_S, LogKeeper
from services.merkle_log.log_store import (
    InclusionProof,
    LoggedEvent,
    LogPlacement,
    MerkleLog,
    StoredCheckpoint,
)
from services.merkle_log.rebuild import RebuildResult, rebuild_log
from services.merkle_log.signing_key import (
    create_key_file,
    load_signer,
    load_verifier,
    public_key_path,
)
from services.merkle_log.tables import LOG_FOLLOWER, log_checkpoints, log_leaves, log_nodes
from services.merkle_log.witness import (
    ApiSource,
    CheckpointSource,
    DatabaseSource,
    WitnessReport,
    witness,
)

__all__ = [
    "LOG_FOLLOWER",
    "SIGN_EVERY_S",
    "ApiSource",
    "CheckpointSource",
    "DatabaseSource",
    "InclusionProof",
    "LogKeeper",
    "LogKeyError",
    "LogPlacement",
    "LoggedEvent",
    "MerkleLog",
    "MerkleLogError",
    "NotInLogError",
    "RebuildResult",
    "StoredCheckpoint",
    "WitnessReport",
    "create_key_file",
    "load_signer",
    "load_verifier",
    "log_checkpoints",
    "log_leaves",
    "log_nodes",
    "public_key_path",
    "rebuild_log",
    "witness",
]
