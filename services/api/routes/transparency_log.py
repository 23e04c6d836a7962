"""The transparency log (DESIGN §11): signed checkpoints, the verifier key, and
inclusion and consistency proofs.

Checkpoints, the key and consistency proofs name no event, so any authenticated
principal reads them.  An inclusion proof names an event: it follows the event's
scope, so a clinic-scoped principal gets proofs only for the device events it may
see (``services.api.queries.scope``) and 404 for anything else.
"""

import base64
import re
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, Path, Query, Response
from pydantic import BaseModel

from schemas.fields import DEVICE_ID_PATTERN
from services.api.access import Principal
from services.api.deps import Auditor, Context, Db, Store, principal
from services.api.problems import ERROR_RESPONSES, bad_request, not_found
from services.api.queries.scope import visible_seqs
from services.merkle_log import LogKeyError, MerkleLog, NotInLogError, load_verifier

router = APIRouter(prefix="/log", tags=["transparency log"], responses=ERROR_RESPONSES)
Reader = Annotated[Principal, Depends(principal)]
NOTE_MEDIA_TYPE: Final = "text/plain; charset=utf-8"
_MAX: Final = 2**62
"""Sizes and seqs the database's BIGINT holds, with room to spare."""
_TEXT: Final[dict[int | str, dict[str, Any]]] = {200: {"content": {"text/plain": {}}}}


class InclusionProofOut(BaseModel):
    stream_id: str
    seq: int
    event_hash: str
    """Hex, as stored; the leaf is SHA-256(0x00 || its 32 raw bytes)."""
    leaf_index: int
    tree_size: int
    audit_path: list[str]
    """Standard base64 hashes, leaf side first (RFC 9162 §2.1.3)."""


class ConsistencyProofOut(BaseModel):
    from_size: int
    to_size: int
    proof: list[str]
    """Standard base64 hashes (RFC 9162 §2.1.4)."""


def merkle_log(api: Context) -> MerkleLog:
    return MerkleLog(api.engine)


Log = Annotated[MerkleLog, Depends(merkle_log)]


@router.get("/checkpoint", summary="The latest signed checkpoint", responses=_TEXT)
def latest_checkpoint(_: Reader, log: Log) -> Response:
    """The newest checkpoint, a C2SP signed note (text/plain)."""
    latest = log.latest_checkpoint()
    if latest is None:
        raise not_found("checkpoint")
    return Response(latest.note, media_type=NOTE_MEDIA_TYPE)


@router.get("/checkpoints/{size}", summary="The checkpoint at a tree size", responses=_TEXT)
def checkpoint_at(_: Reader, log: Log, size: Annotated[int, Path(ge=0, le=_MAX)]) -> Response:
    """The checkpoint signed when the log had ``size`` leaves (every one is kept)."""
    found = log.checkpoint(size)
    if found is None:
        raise not_found("checkpoint")
    return Response(found.note, media_type=NOTE_MEDIA_TYPE)


@router.get("/public-key", summary="The log's verifier key", responses=_TEXT)
def public_key(_: Reader, api: Context) -> Response:
    """``<name>+<hex key hash>+<base64(0x01 || Ed25519 key)>`` (C2SP verifier key).
    Compare it with one obtained another way before trusting it."""
    try:
        verifier = load_verifier(api.log_key.path, api.log_key.origin)
    except LogKeyError:
        raise not_found("log key") from None
    return Response(verifier.text() + "\n", media_type=NOTE_MEDIA_TYPE)


@router.get("/proofs/inclusion", summary="An event's inclusion proof")
def inclusion_proof(
    who: Auditor,
    log: Log,
    db: Db,
    store: Store,
    stream_id: Annotated[str, Query(min_length=1, max_length=200)],
    seq: Annotated[int, Query(ge=1, le=_MAX)],
    size: Annotated[
        int | None, Query(ge=1, le=_MAX, description="Default: the latest checkpoint's.")
    ] = None,
) -> InclusionProofOut:
    """The audit path of the event ``(stream_id, seq)`` in the tree of ``size`` leaves."""
    if who.clinic_id is not None and not (
        re.fullmatch(DEVICE_ID_PATTERN, stream_id)
        and seq in visible_seqs(db, store, who, stream_id, [seq])
    ):
        raise not_found("event")
    if size is None:
        latest = log.latest_checkpoint()
        if latest is None:
            raise not_found("checkpoint")
        size = latest.size
    try:
        proof = log.inclusion(stream_id, seq, size)
    except NotInLogError:
        raise not_found("event in the log at this size") from None
    return InclusionProofOut(
        stream_id=stream_id, seq=seq, event_hash=proof.event_hash, leaf_index=proof.leaf_index,
        tree_size=proof.tree_size, audit_path=[_b64(hash_) for hash_ in proof.path],
    )  # fmt: skip


@router.get("/proofs/consistency", summary="A consistency proof between two sizes")
def consistency_proof(
    _: Reader,
    log: Log,
    from_size: Annotated[int, Query(alias="from", ge=1, le=_MAX)],
    to_size: Annotated[int, Query(alias="to", ge=1, le=_MAX)],
) -> ConsistencyProofOut:
    """The proof that the tree of ``from`` leaves is a prefix of the tree of ``to``."""
    if from_size > to_size:
        raise bad_request("from must not exceed to")
    try:
        proof = log.consistency(from_size, to_size)
    except NotInLogError:
        raise not_found("tree size") from None
    return ConsistencyProofOut(
        from_size=from_size, to_size=to_size, proof=[_b64(hash_) for hash_ in proof]
    )


def _b64(value: bytes) -> str:
    return base64.b64encode(value).decode()
