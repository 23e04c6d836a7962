"""``run_log_keeper``: the transparency log kept beside the projector, for the CLI.

Its own thread with its own store handle: logging and signing never wait for the
folds, and the log keeps pace with ingest on its own (DESIGN §11)."""

import logging
import threading
from pathlib import Path
from typing import Final

from sqlalchemy.exc import SQLAlchemyError

from services.eventstore import EventStoreError, open_event_store
from services.merkle_log import SIGN_EVERY_S, LogKeeper, MerkleLog, StoredCheckpoint, load_signer
from services.projector.checkpoint_publisher import CheckpointPublisher
from transport import BrokerAddress

log = logging.getLogger(__name__)
_RETRY_S: Final = 2.0
GATHER_S: Final = 0.5
"""After a short batch (the keeper has caught up), how long the next one gathers.
Nothing waits on a leaf (checkpoints are signed at most every 10 s), while every
batch costs a transaction and the tree's frontier whatever its size: woken by each
append under load, the keeper spent 30–40 µs of CPU an event on batches of a few
dozen, in the process whose interpreter lock the projector's loop shares."""


def run_log_keeper(
    database_url: str,
    broker: BrokerAddress | None,
    key_file: Path,
    origin: str,
    stop: threading.Event,
    sign_every_s: float = SIGN_EVERY_S,
    gather_s: float = GATHER_S,
) -> None:
    """Keep the log and publish its checkpoints until ``stop`` is set
    (``broker=None``: checkpoints are signed and stored, not published)."""
    signer = load_signer(key_file, origin)
    store = open_event_store(database_url)
    merkle_log = MerkleLog.open(database_url)
    publisher = CheckpointPublisher(broker) if broker is not None else None
    keeper = LogKeeper(store, merkle_log, signer, sign_every_s=sign_every_s)
    try:
        if publisher is not None:
            publisher.start()
            latest = merkle_log.latest_checkpoint()
            if latest is not None:
                publisher.publish(latest.note)

        def published(checkpoint: StoredCheckpoint) -> None:
            if publisher is not None:
                publisher.publish(checkpoint.note)

        while not stop.is_set():
            try:
                logged = keeper.run_once(published)
                if 0 < logged < keeper.batch_size:
                    stop.wait(gather_s)
            except (EventStoreError, SQLAlchemyError) as error:
                # The database is away (or a rebuild holds the log): nothing was
                # half-written, since each batch commits whole; try again shortly.  The
                # store reconnects by itself, to the new primary after a failover.
                first_line = (str(error).strip() or type(error).__name__).splitlines()[0]
                log.warning("the log keeper could not reach the database (%s); retrying",
                            first_line)  # fmt: skip
                keeper.close()
                stop.wait(_RETRY_S)
            if publisher is not None:
                publisher.republish_if_reconnected()
    finally:
        keeper.close()
        if publisher is not None:
            publisher.stop()
        store.close()
        merkle_log.close()
