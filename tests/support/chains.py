"""Two boards on one device id: a chain and another board's chain that shares its
first events, for the chain-custody tests."""

from collections.abc import Sequence
from datetime import timedelta

from schemas import GENESIS_HASH, SealedEvent
from tests.support.streams import EPOCH, reseal, timestamp


def other_board(chain: Sequence[SealedEvent], from_seq: int) -> list[SealedEvent]:
    """The chain another board on the same id would send: ``chain``'s events before
    ``from_seq`` (their common prefix), then the same story an hour later, each event
    resealed onto the other board's own predecessor."""
    board = list(chain[: from_seq - 1])
    prev_hash = board[-1].hash if board else GENESIS_HASH
    for event in chain[from_seq - 1 :]:
        later = timestamp(EPOCH + timedelta(hours=1, seconds=2 * event.seq))
        other = reseal(event, prev_hash=prev_hash, occurred_at=later)
        board.append(other)
        prev_hash = other.hash
    return board
