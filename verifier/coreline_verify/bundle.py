"""Reading the lines of a ``coreline-evidence/v1`` bundle (JSON Lines, UTF-8).

An event line is ``{"log_index":I,"hash":"…","proof":[…],"event":`` + the event's
stored bytes + ``}``: the stored bytes sit in the line verbatim, as the last member,
so the line is JSON and the bytes are exact.  Every other line is a JSON object
with one member naming its kind (``stream``, ``seal``, ``end``); the first line is
the header.
"""

import hashlib
from typing import Any, Final, NamedTuple

from coreline_verify.errors import BundleUnreadable, NotCanonicalError
from coreline_verify.jcs import (
    NeedsDefinition,
    fast_encode,
    fast_parse,
    parse_json,
    read_canonical,
)
from coreline_verify.merkle import InclusionChecker, ProofError

FORMAT: Final = "coreline-evidence/v1"
EVENT_LINE_START: Final = b'{"log_index":'
_EVENT_MEMBER: Final = b',"event":'
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


def _parse(line: bytes, start: int, body: bytes) -> tuple[Any, Any, str | None]:
    """The line's members, the event, and why its bytes are not canonical (if so)."""
    if line.isascii():
        text = line.decode("ascii")
        try:
            record = fast_parse(text)
        except (NeedsDefinition, NotCanonicalError):
            pass  # the careful road below decides
        else:
            event = record.get("event") if type(record) is dict else None
            if fast_encode(event) != text[start + len(_EVENT_MEMBER) : -1]:
                return record, None, _NOT_CANONICAL
            return record, event, None
    try:
        record = parse_json(line)
    except NotCanonicalError:
        # Unreadable as a whole: the members before the event may still name its
        # hash, so that a damaged event is reported as what it is.
        record = parse_json(line[:start] + b"}")
    try:
        return record, read_canonical(body), None
    except NotCanonicalError as error:
        return record, None, f"{_NOT_CANONICAL}: {error}"


def prepare_event(line: bytes, inclusion: InclusionChecker) -> PreparedEvent:
    """Split an event line into its members and the exact stored bytes, hash the
    bytes, parse them (checking they are canonical), and check the inclusion proof
    of their hash.  Raises ``BundleUnreadable`` for a line of the wrong shape."""
    start = line.find(_EVENT_MEMBER)
    if start < 0 or not line.endswith(b"}"):
        raise BundleUnreadable('an event line ends with "event": and the stored bytes')
    body = line[start + len(_EVENT_MEMBER) : -1]
    digest = hashlib.sha256(body)
    computed = digest.hexdigest()
    record, event, problem = _parse(line, start, body)
    if type(record) is not dict:
        raise BundleUnreadable("an event line is a JSON object")
    log_index, stated, proof = record.get("log_index"), record.get("hash"), record.get("proof")
    if type(log_index) is not int or type(stated) is not str:
        raise BundleUnreadable("an event line has an integer log_index and a hash")
    if stated != computed:
        problem = "hash does not match its bytes"
    elif event is not None and type(event) is not dict:
        event, problem = None, "its bytes are not a JSON object"
    elif event is not None and "hash" in event:
        problem = "the stored bytes hold a hash member"
    try:
        inclusion.check(digest.digest(), log_index, proof)
        included = None
    except ProofError as error:
        included = f"inclusion proof {error}"
    if problem is not None or event is None:
        return PreparedEvent(log_index, computed, problem, included, None, None, None, None, None)
    kind = event.get("type")
    # tuple.__new__ directly: the generated __new__ is a Python frame, per event.
    return _new_prepared(
        PreparedEvent,
        (
            log_index,
            computed,
            None,
            included,
            event.get("seq"),
            event.get("prev_hash"),
            event.get("device_id"),
            kind,
            event.get("data") if kind in FOLDED_TYPES else None,
        ),
    )


def read_line(line: bytes) -> dict[str, Any]:
    """Any other line: a JSON object."""
    try:
        value = parse_json(line)
    except NotCanonicalError as error:
        raise BundleUnreadable(f"a line is not JSON: {error}") from error
    if not isinstance(value, dict):
        raise BundleUnreadable("every line of a bundle is a JSON object")
    return value
