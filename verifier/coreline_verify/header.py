"""The bundle's header: its signed checkpoint, and every witnessed checkpoint
consistent with it (docs/evidence-bundle.md, section 5, steps 1-5)."""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from coreline_verify.bundle import FORMAT
from coreline_verify.errors import BundleUnreadable, CheckFailed
from coreline_verify.merkle import ProofError, split_path, verify_consistency
from coreline_verify.note import (
    Checkpoint,
    NoteError,
    VerifierKey,
    parse_verifier_key,
    read_checkpoint,
)


@dataclass(frozen=True, slots=True)
class Witness:
    """A checkpoint an auditor kept, given on the command line."""

    name: str
    note: str


@dataclass(frozen=True, slots=True)
class CheckedHeader:
    checkpoint: Checkpoint
    witnessed: int
    """Witnessed checkpoints found consistent: the bundle's and the auditor's."""


def check_header(
    record: dict[str, Any], pinned_key: VerifierKey | None, witnesses: Sequence[Witness]
) -> CheckedHeader:
    """Verify the checkpoint under the pinned key (else the bundle's), then each
    witnessed checkpoint; raise ``CheckFailed`` naming the first that fails."""
    if record.get("format") != FORMAT:
        raise BundleUnreadable(f"not a {FORMAT} bundle")
    log = record.get("log")
    if not isinstance(log, dict):
        raise BundleUnreadable("the header has no log member")
    key = pinned_key
    if key is None:
        try:
            key = parse_verifier_key(str(log.get("verifier_key")))
        except NoteError as error:
            raise CheckFailed(f"log verifier key: {error}") from error
    checkpoint = _signed_checkpoint("checkpoint", log.get("checkpoint"), key)
    if checkpoint.origin != log.get("origin"):
        raise CheckFailed(
            f"checkpoint: origin {checkpoint.origin!r} is not the log's {log.get('origin')!r}"
        )
    proved = _bundle_witnesses(record.get("witnesses", []), key, checkpoint)
    for witness in witnesses:
        _check_kept(witness, key, checkpoint, proved)
    return CheckedHeader(checkpoint, len(proved) + len(witnesses))


def _signed_checkpoint(what: str, note: Any, key: VerifierKey) -> Checkpoint:
    if not isinstance(note, str):
        raise BundleUnreadable(f"{what}: a signed note is text")
    try:
        return read_checkpoint(note, key)
    except NoteError as error:
        raise CheckFailed(f"{what}: {error}") from error


def _bundle_witnesses(entries: Any, key: VerifierKey, checkpoint: Checkpoint) -> list[Checkpoint]:
    """Verify each witnessed checkpoint the bundle carries with its consistency
    proof; return them, all proved consistent with the bundle's checkpoint."""
    if not isinstance(entries, list):
        raise BundleUnreadable("witnesses is a list")
    proved: list[Checkpoint] = []
    for number, entry in enumerate(entries, 1):
        what = f"bundle witness {number}"
        if not isinstance(entry, dict):
            raise BundleUnreadable(f"{what} is an object")
        kept = _signed_checkpoint(what, entry.get("checkpoint"), key)
        if kept.origin != checkpoint.origin:
            raise CheckFailed(f"{what}: another log ({kept.origin!r})")
        try:
            proof = split_path(entry.get("consistency_proof", ""))
            verify_consistency(kept.size, kept.root, checkpoint.size, checkpoint.root, proof)
        except ProofError as error:
            raise CheckFailed(f"{what} (size {kept.size}): {error}") from error
        proved.append(kept)
    return proved


def _check_kept(
    witness: Witness, key: VerifierKey, checkpoint: Checkpoint, proved: list[Checkpoint]
) -> None:
    """An auditor's own checkpoint must be the bundle's, or one of the bundle's
    witnesses proved consistent with it (same size, same root)."""
    what = f"witness {witness.name}"
    kept = _signed_checkpoint(what, witness.note, key)
    if kept.origin != checkpoint.origin:
        raise CheckFailed(f"{what}: another log ({kept.origin!r})")
    if kept.size > checkpoint.size:
        raise CheckFailed(
            f"{what}: size {kept.size} is newer than the bundle's checkpoint "
            f"(size {checkpoint.size})"
        )
    if kept.size == checkpoint.size:
        if kept.root != checkpoint.root:
            raise CheckFailed(
                f"{what}: another root for size {kept.size} (a split view of the log)"
            )
    elif not any(kept.size == other.size and kept.root == other.root for other in proved):
        raise CheckFailed(
            f"{what}: the bundle holds no consistency proof from size {kept.size} with this "
            "root (inconsistent with the bundle's checkpoint)"
        )
