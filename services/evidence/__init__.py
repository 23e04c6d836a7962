"""Evidence bundles (DESIGN §11, docs/evidence-bundle.md): the writer the platform's
export calls.  Pure: it is handed the stored bytes, proofs, seals and checkpoints,
and streams them to a file object; it reads no store and signs nothing."""

from services.evidence.writer import (
    FORMAT,
    BundleSummary,
    EvidenceError,
    LogEvidence,
    LoggedEvent,
    Scope,
    StreamEvidence,
    StreamSeal,
    WitnessEvidence,
    write_bundle,
)

__all__ = [
    "FORMAT",
    "BundleSummary",
    "EvidenceError",
    "LogEvidence",
    "LoggedEvent",
    "Scope",
    "StreamEvidence",
    "StreamSeal",
    "WitnessEvidence",
    "write_bundle",
]
