"""Evidence bundles (DESIGN §11, docs/evidence-bundle.md).  The writer is pure: it
is handed the stored bytes, proofs, seals and checkpoints, and streams them to a file
object; it reads no store and signs nothing.  The export (``plan_export``,
``write_export``) reads the store and the log and feeds the writer."""

from services.evidence.export import (
    ExportError,
    ExportPlan,
    NothingToExportError,
    bundle_chunks,
    plan_export,
    write_export,
)
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
    "ExportError",
    "ExportPlan",
    "LogEvidence",
    "LoggedEvent",
    "NothingToExportError",
    "Scope",
    "StreamEvidence",
    "StreamSeal",
    "WitnessEvidence",
    "bundle_chunks",
    "plan_export",
    "write_bundle",
    "write_export",
]
