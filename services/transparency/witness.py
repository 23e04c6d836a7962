"""What a witness concludes from the checkpoint it kept, the one it is shown now,
and the consistency proof between them: the decision alone, no I/O."""

from collections.abc import Sequence
from dataclasses import dataclass

from services.transparency.checkpoint import Checkpoint
from services.transparency.verify import verify_consistency


@dataclass(frozen=True, slots=True)
class Verdict:
    consistent: bool
    reason: str


def judge(kept: Checkpoint | None, latest: Checkpoint, proof: Sequence[bytes] | None) -> Verdict:
    """Whether ``latest`` extends ``kept``; ``proof`` is the consistency proof from
    ``kept.size`` to ``latest.size`` (``None`` when none was needed or offered)."""
    if kept is None:
        return Verdict(True, f"first checkpoint kept: size {latest.size}")
    if latest.origin != kept.origin:
        return Verdict(False, f"another log: origin {latest.origin!r}, kept {kept.origin!r}")
    if latest.size < kept.size:
        return Verdict(
            False, f"the log shrank: size {latest.size} is smaller than the kept {kept.size}"
        )
    if latest.size == kept.size:
        if latest.root != kept.root:
            return Verdict(False, f"split view: a different root at the same size {latest.size}")
        return Verdict(True, f"unchanged at size {latest.size}")
    if kept.size == 0:
        return Verdict(True, f"grew from empty to size {latest.size}")
    if proof is None or not verify_consistency(
        kept.size, latest.size, kept.root, latest.root, proof
    ):
        return Verdict(
            False,
            f"inconsistent: the proof from size {kept.size} to {latest.size} does not verify "
            "(the log was rewritten)",
        )
    return Verdict(True, f"consistent: grew from size {kept.size} to {latest.size}")
