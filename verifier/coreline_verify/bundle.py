"""Reading the lines of a ``coreline-evidence/v1`` bundle (JSON Lines, UTF-8).

An event line is ``{"log_index":I,"hash":"…","proof":"…","event":`` + the event's
stored bytes + ``}``: the stored bytes sit in the line verbatim, as the last member,
so the line is JSON and the bytes are exact.  Every other line is a JSON object
with one member naming its kind (``stream``, ``seal``, ``end``); the first line is
the header.
"""

import hashlib
from typing import Any, Final, NamedTuple

from coreline_verify.errors import BundleUnreadable, NotCanonicalError
from coreline_verify.jcs import parse_json, read_canonical
from coreline_verify.merkle import InclusionChecker, ProofError

FORMAT: Final = "coreline-evidence/v1"
EVENT_LINE_START: Final = b'{"log_index":'
SEAL_LINE_START: Final = b'{"seal":'
_EVENT_MEMBER: Final = b',"event":'
_LOG_INDEX_AT: Final = len(EVENT_LINE_START)
_HASH_MEMBER: Final = b',"hash":"'
_HASH_DIGITS: Final = 64
_PROOF_MEMBER: Final = b'","proof":"'
_EVENT_AFTER_PROOF: Final = b'","event":'
# Offsets from one member to the next, computed once: a call of len() per event
# is not free.
_HASH_FROM_COMMA: Final = len(_HASH_MEMBER)
_PROOF_FROM_HASH: Final = _HASH_DIGITS + len(_PROOF_MEMBER)
_EVENT_FROM_PROOF_END: Final = len(_EVENT_AFTER_PROOF)
_ZERO: Final = ord("0")
_LINE_FEED: Final = ord("\n")
_CLOSING_BRACE: Final = ord("}")
_MAX_INDEX_DIGITS: Final = 19
_NOT_CANONICAL: Final = "its bytes are not canonical JSON (RFC 8785)"


FOLDED_TYPES: Final = frozenset({
    "cartridge.installed", "cartridge.removed", "session.started", "cores.punched",
    "session.ended", "device.key_registered", "device.key_revoked",
})  # fmt: skip
"""Event types whose ``data`` the checks after the bytes need (sessions and keys)."""


class PreparedEvent(NamedTuple):
    """What the checks of an event need from its line, once its bytes have been
    hashed, parsed and found canonical, and its inclusion proof checked.  A plain
    tuple underneath, so that it travels cheaply between processes."""

    log_index: int
    event_hash: str
    """SHA-256 hex of the stored bytes."""
    bytes_failure: str | None
    """Why the stored bytes fail (hash, canonical form), or ``None``."""
    inclusion_failure: str | None
    seq: Any
    prev_hash: Any
    device_id: Any
    type: Any
    data: Any
    """``data`` for the types in ``FOLDED_TYPES``, else ``None``."""


_new_prepared: Final = tuple.__new__
_sha256: Final = hashlib.sha256


def prepare_event(line: bytes, inclusion: InclusionChecker) -> PreparedEvent:
    """Split an event line (with or without its line feed) into its members and the
    exact stored bytes, hash the bytes, parse them (checking they are canonical), and
    check the inclusion proof of their hash.  Raises ``BundleUnreadable`` for a line
    of the wrong shape."""
    # An event line of exactly the documented shape is read by position: the members
    # before the event are not parsed as JSON (the proof alone is some 1,300
    # characters).  Any other line, or one that fails, takes the general road, which
    # reads the line as JSON and names the failure.
    comma = line.find(_HASH_MEMBER, _LOG_INDEX_AT)
    digits = line[_LOG_INDEX_AT:comma]
    hash_at = comma + _HASH_FROM_COMMA
    proof_at = hash_at + _PROOF_FROM_HASH
    # The proof's closing quote is the first quote after its opening one.
    proof_end = line.find(b'"', proof_at)
    end = len(line) - 1
    if line[end] == _LINE_FEED:
        end -= 1
    if (
        comma < 0
        # log_index written plainly, as the writer does (no sign, no leading zero)
        or not digits.isdigit()
        or len(digits) > _MAX_INDEX_DIGITS
        or (digits[0] == _ZERO and len(digits) > 1)
        or not line.startswith(_PROOF_MEMBER, hash_at + _HASH_DIGITS)
        or not line.startswith(_EVENT_AFTER_PROOF, proof_end)
        or line[end] != _CLOSING_BRACE
    ):
        return _prepare_in_general(line, inclusion)
    # The first ``,"event":`` is here: nothing before it holds a quote but the
    # members' own, once the hash is found to be hex below.
    body = line[proof_end + _EVENT_FROM_PROOF_END : end]
    digest = _sha256(body).digest()
    computed = digest.hex()
    if not line.startswith(computed.encode(), hash_at):
        return _prepare_in_general(line, inclusion)
    try:
        event = read_canonical(body)
    except NotCanonicalError:
        return _prepare_in_general(line, inclusion)
    if type(event) is not dict or "hash" in event:
        return _prepare_in_general(line, inclusion)
    log_index = int(digits)
    try:
        # The proof as it stands: a backslash in it (an escape the general road
        # would decode) is not hex, so it fails here and is read again there.
        inclusion.check(digest, log_index, line, proof_at, proof_end)
    except ProofError:
        return _prepare_in_general(line, inclusion)
    kind = event.get("type")
    # tuple.__new__ directly: the generated __new__ is a Python frame, per event.
    return _new_prepared(
        PreparedEvent,
        (
            log_index,
            computed,
            None,
            None,
            event.get("seq"),
            event.get("prev_hash"),
            event.get("device_id"),
            kind,
            event.get("data") if kind in FOLDED_TYPES else None,
        ),
    )


def _not_an_event(value: Any) -> str:
    if type(value) is not dict:
        return "its bytes are not a JSON object"
    return "the stored bytes hold a hash member"


def _prepare_in_general(line: bytes, inclusion: InclusionChecker) -> PreparedEvent:
    """``prepare_event`` for a line of any other shape, or one that fails: parsed as
    JSON."""
    if line.endswith(b"\n"):
        line = line[:-1]
    start = line.find(_EVENT_MEMBER)
    if start < 0 or not line.endswith(b"}"):
        raise BundleUnreadable('an event line ends with "event": and the stored bytes')
    body = line[start + len(_EVENT_MEMBER) : -1]
    try:
        record = parse_json(line)
    except NotCanonicalError:
        # Unreadable as a whole: the members before the event may still name its
        # hash, so that a damaged event is reported as what it is.
        record = parse_json(line[:start] + b"}")
    if type(record) is not dict:
        raise BundleUnreadable("an event line is a JSON object")
    log_index, stated, proof = record.get("log_index"), record.get("hash"), record.get("proof")
    if type(log_index) is not int or type(stated) is not str:
        raise BundleUnreadable("an event line has an integer log_index and a hash")
    digest = _sha256(body)
    computed = digest.hexdigest()
    if stated != computed:
        return _prepared(
            log_index, computed, digest.digest(), proof, "hash does not match its bytes", inclusion
        )
    try:
        event = read_canonical(body)
    except NotCanonicalError as error:
        return _prepared(
            log_index, computed, digest.digest(), proof, f"{_NOT_CANONICAL}: {error}", inclusion
        )
    if type(event) is not dict or "hash" in event:
        return _prepared(
            log_index, computed, digest.digest(), proof, _not_an_event(event), inclusion
        )
    prepared = _prepared(log_index, computed, digest.digest(), proof, None, inclusion)
    kind = event.get("type")
    return prepared._replace(
        seq=event.get("seq"),
        prev_hash=event.get("prev_hash"),
        device_id=event.get("device_id"),
        type=kind,
        data=event.get("data") if kind in FOLDED_TYPES else None,
    )


def _prepared(
    log_index: int,
    computed: str,
    digest: bytes,
    proof: Any,
    problem: str | None,
    inclusion: InclusionChecker,
) -> PreparedEvent:
    """An event with its bytes' failure, if any, and its inclusion checked."""
    return PreparedEvent(
        log_index,
        computed,
        problem,
        _inclusion_failure(inclusion, digest, log_index, proof),
        None,
        None,
        None,
        None,
        None,
    )


def _inclusion_failure(
    inclusion: InclusionChecker, digest: bytes, log_index: int, proof: Any
) -> str | None:
    try:
        inclusion.check(digest, log_index, proof)
    except ProofError as error:
        return f"inclusion proof {error}"
    return None


def read_line(line: bytes) -> dict[str, Any]:
    """Any other line (with or without its line feed): a JSON object."""
    try:
        value = parse_json(line)
    except NotCanonicalError as error:
        raise BundleUnreadable(f"a line is not JSON: {error}") from error
    if not isinstance(value, dict):
        raise BundleUnreadable("every line of a bundle is a JSON object")
    return value
