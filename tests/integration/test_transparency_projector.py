"""``coreline projector`` keeps the transparency log by itself (DESIGN §11): with no
further command it makes the log key when missing, logs every stored event as it is
appended, and publishes the signed checkpoint, retained, on
``coreline/v1/log/checkpoint``."""

import time
from collections.abc import Callable
from pathlib import Path

from services.eventstore import open_event_store
from services.merkle_log import MerkleLog
from services.transparency import Checkpoint, Verifier
from tests.support.mosquitto import TemporaryMosquitto
from tests.support.platform_processes import coreline
from tests.support.streams import device_stream
from tests.support.subscriber import RecordingSubscriber

TOPIC = "coreline/v1/log/checkpoint"


def _eventually(check: Callable[[], object], within_s: float = 30.0) -> None:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError("not within the time allowed")


def test_the_projector_logs_signs_and_publishes_checkpoints(
    sqlite_url: str, tmp_path: Path
) -> None:
    """Events appended while the projector runs all become leaves (its own alert events
    too); the checkpoint it signs verifies under the key it made, and a subscriber that
    comes later still receives it (retained)."""
    store = open_event_store(sqlite_url)
    store.append(device_stream("HP-000401", 40))
    key = tmp_path / "coreline-log.key"
    with TemporaryMosquitto() as broker:
        projector = coreline(
            "projector", "--metrics-port", "0", log=tmp_path / "projector.log",
            database_url=sqlite_url, mqtt_url=broker.url, webhook_master_key="m" * 32,
            log_key_file=str(key),
        )  # fmt: skip
        try:
            merkle_log = MerkleLog.open(sqlite_url)
            _eventually(lambda: (found := merkle_log.latest_checkpoint()) and found.size >= 40)
            head = store.head("HP-000401")
            assert head is not None
            store.append(device_stream("HP-000401", 25, first_seq=41, prev_hash=head.hash))
            # Logged without waiting to sign; the alert events the projector appends too.
            _eventually(lambda: merkle_log.size() == store.count_events() > 65)
            verifier = Verifier.parse((tmp_path / "coreline-log.key.pub").read_text())
            with RecordingSubscriber(broker.port, TOPIC, client_id="late-witness") as witness:
                _eventually(lambda: bool(witness.messages))
                note = witness.messages[-1][1].decode()
            checkpoint = Checkpoint.parse(verifier.verify(note))
            assert checkpoint.size >= 40
            assert checkpoint.root == merkle_log.root_at(checkpoint.size)
            merkle_log.close()
        finally:
            projector.terminate()
            projector.wait(timeout=30)
    store.close()
    assert key.stat().st_mode & 0o077 == 0
    log_text = (tmp_path / "projector.log").read_text()
    assert "created the log signing key" in log_text
