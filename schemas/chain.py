"""Verify a stream's hash chain from stored bytes.  Pure: no I/O."""

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import orjson

from schemas.canonical import GENESIS_HASH, canonical_body, sha256_hex


class ChainStatus(StrEnum):
    VERIFIED = "verified"
    """Contiguous from seq 1, every hash and link checked."""
    BROKEN = "broken"
    """A hash or link does not hold: something was altered, removed or reordered."""
    INCOMPLETE = "incomplete"
    """Every link present checks out, but events are missing (a gap or a missing start)."""


@dataclass(frozen=True, slots=True)
class ChainLink:
    """One stored event as the chain sees it: what was hashed and the hash."""

    seq: int
    body: bytes
    hash: str
    event_id: str | None = None


@dataclass(frozen=True, slots=True)
class ChainVerdict:
    status: ChainStatus
    events_checked: int
    last_seq: int
    last_hash: str
    first_bad_seq: int | None = None
    first_bad_event_id: str | None = None
    problem: str | None = None


def link_of_wire_event(event: dict[str, Any]) -> ChainLink:
    """The chain link of an event as it appears on the wire (with its ``hash``)."""
    return ChainLink(
        seq=event["seq"], body=canonical_body(event), hash=event["hash"], event_id=event["event_id"]
    )


def verify_chain(links: Iterable[ChainLink]) -> ChainVerdict:
    """Check links given in ``seq`` order: each body hashes to its hash, names its own
    seq, and points at the previous link's hash.  Stops at the first broken link."""
    last_seq, last_hash, checked = 0, GENESIS_HASH, 0
    missing: str | None = None
    for link in links:
        problem = _link_problem(link, last_seq, last_hash)
        if problem is _GAP:
            missing = missing or f"events {last_seq + 1}..{link.seq - 1} are missing"
        elif problem is not None:
            return ChainVerdict(
                ChainStatus.BROKEN, checked, last_seq, last_hash, link.seq, link.event_id, problem
            )
        last_seq, last_hash, checked = link.seq, link.hash, checked + 1
    status = ChainStatus.INCOMPLETE if missing else ChainStatus.VERIFIED
    return ChainVerdict(status, checked, last_seq, last_hash, problem=missing)


_GAP = "gap"


def _link_problem(link: ChainLink, last_seq: int, last_hash: str) -> str | None:
    if sha256_hex(link.body) != link.hash:
        return f"seq {link.seq}: stored hash does not match the SHA-256 of the stored event"
    try:
        body = orjson.loads(link.body)
        body_seq, prev_hash = body["seq"], body["prev_hash"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return f"seq {link.seq}: stored event is not an event"
    if body_seq != link.seq:
        return f"seq {link.seq}: stored event says it is seq {body_seq}"
    if link.seq <= last_seq:
        return f"seq {link.seq}: out of order after seq {last_seq}"
    if link.seq != last_seq + 1:
        # The link cannot be checked against a predecessor we do not have.
        return _GAP
    if prev_hash != last_hash:
        return f"seq {link.seq}: prev_hash does not match the hash of seq {last_seq}"
    return None
