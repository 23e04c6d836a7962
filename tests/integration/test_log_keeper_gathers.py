"""Under a steady trickle of appends the log keeper logs in gathered batches, not one
per append, and still logs every event (DESIGN §11: checkpoints at most every 10 s)."""

import threading
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
from sqlalchemy import Connection

from services.eventstore import Cursor, EventStore
from services.merkle_log import MerkleLog, create_key_file
from services.merkle_log.log_store import LoggedEvent
from services.projector.log_process import run_log_keeper
from services.transparency import Node
from tests.support.streams import device_stream

ORIGIN = "coreline/log/v1"


def test_a_trickle_is_logged_whole_in_gathered_batches(
    store: EventStore, store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    batches: list[int] = []
    write_batch = MerkleLog.write_batch

    def counted(
        self: MerkleLog,
        connection: Connection,
        leaves: Sequence[LoggedEvent],
        nodes: Sequence[Node],
        cursor: Cursor,
    ) -> None:
        batches.append(len(leaves))
        write_batch(self, connection, leaves, nodes, cursor)

    monkeypatch.setattr(MerkleLog, "write_batch", counted)
    key = tmp_path / "log.key"
    create_key_file(key, ORIGIN)
    stop = threading.Event()
    keeper = threading.Thread(
        target=run_log_keeper, args=(store_url, None, key, ORIGIN, stop), kwargs={"gather_s": 0.5}
    )
    keeper.start()
    merkle_log = MerkleLog.open(store_url)
    try:
        events = device_stream("HP-000701", 100)
        for event in events:  # one append every 20 ms for 2 s
            store.append([event])
            time.sleep(0.02)
        deadline = time.monotonic() + 15
        while merkle_log.size() < len(events) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert merkle_log.size() == len(events)
    finally:
        stop.set()
        keeper.join(timeout=15)
        merkle_log.close()
    assert sum(batches) == len(events)
    # About one batch a gathering (2 s / 0.5 s), where one an append would be 100.
    assert len(batches) <= 12, batches
