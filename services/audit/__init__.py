"""Auditing stored events: recompute every hash chain from the stored bytes
(``coreline verify``).  The fold over one stream is pure (``chain_audit``); reading
the store stream by stream is ``verify``."""

from services.audit.chain_audit import (
    MAX_KEPT_FINDINGS,
    ChainAudit,
    Defect,
    Finding,
    SessionVerdict,
    StoredRecord,
    audit_record,
    body_names_session,
    session_of,
)
from services.audit.report import Tally, describe, session_line, stream_lines, summary_line
from services.audit.verify import (
    READ_CHUNK,
    AllStreams,
    DeviceTarget,
    SessionTarget,
    StreamReader,
    VerifyTarget,
    VerifyUsageError,
    audit_stream,
    find_session_stream,
    parse_target,
    verify,
)

__all__ = [
    "MAX_KEPT_FINDINGS",
    "READ_CHUNK",
    "AllStreams",
    "ChainAudit",
    "Defect",
    "DeviceTarget",
    "Finding",
    "SessionTarget",
    "SessionVerdict",
    "StoredRecord",
    "StreamReader",
    "Tally",
    "VerifyTarget",
    "VerifyUsageError",
    "audit_record",
    "audit_stream",
    "body_names_session",
    "describe",
    "find_session_stream",
    "parse_target",
    "session_line",
    "session_of",
    "stream_lines",
    "summary_line",
    "verify",
]
