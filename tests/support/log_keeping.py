"""What the projector's log keeper does, in one call: log every stored event and
sign a checkpoint of the log."""

from pathlib import Path

from services.eventstore import EventStore
from services.merkle_log import LogKeeper, MerkleLog, StoredCheckpoint, load_signer
from services.transparency import DEFAULT_ORIGIN


def log_and_sign(
    store: EventStore, url: str, key: Path, origin: str = DEFAULT_ORIGIN
) -> StoredCheckpoint | None:
    """The checkpoint signed (``None`` when the log has not grown since the last)."""
    merkle_log = MerkleLog.open(url)
    try:
        keeper = LogKeeper(store, merkle_log, load_signer(key, origin))
        keeper.catch_up()
        signed = keeper.sign_if_due(now=True)
        keeper.close()
        return signed
    finally:
        merkle_log.close()
