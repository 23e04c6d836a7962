"""Offline verifier of Coreline evidence bundles (``coreline-evidence/v1``).

It depends on ``cryptography`` alone and imports nothing from the platform: the
bundle format (docs/evidence-bundle.md) is the whole contract.
"""

from coreline_verify.errors import BundleUnreadable, CheckFailed, NotCanonicalError, VerifyError
from coreline_verify.facts import SessionFacts
from coreline_verify.header import Witness
from coreline_verify.jcs import canonical_json, ecmascript_number, read_canonical
from coreline_verify.merkle import (
    InclusionChecker,
    ProofError,
    leaf_hash,
    node_hash,
    root_of,
    verify_consistency,
    verify_inclusion,
)
from coreline_verify.note import (
    Checkpoint,
    NoteError,
    VerifierKey,
    key_id_for,
    parse_verifier_key,
    read_checkpoint,
)
from coreline_verify.seals import key_id_of, seal_message
from coreline_verify.verify import Verdict, verify_file, verify_lines

__all__ = [
    "BundleUnreadable",
    "CheckFailed",
    "Checkpoint",
    "InclusionChecker",
    "NotCanonicalError",
    "NoteError",
    "ProofError",
    "SessionFacts",
    "Verdict",
    "VerifierKey",
    "VerifyError",
    "Witness",
    "canonical_json",
    "ecmascript_number",
    "key_id_for",
    "key_id_of",
    "leaf_hash",
    "node_hash",
    "parse_verifier_key",
    "read_canonical",
    "read_checkpoint",
    "root_of",
    "seal_message",
    "verify_consistency",
    "verify_file",
    "verify_inclusion",
    "verify_lines",
]
