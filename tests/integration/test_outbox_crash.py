"""kill -9 at any instant leaves the outbox with whole chains: every event that
exists has its place, and the head names the last one."""

import subprocess
import sys
import time
from pathlib import Path

import orjson

from edge_agent.outbox import Outbox
from schemas.chain import ChainStatus, link_of_wire_event, verify_chain

DEVICES = ("HP-000101", "HP-000102", "HP-000103")


def test_killing_the_writer_at_random_instants_never_breaks_a_chain(tmp_path: Path) -> None:
    """Killing the outbox writer at random instants leaves every chain intact and growing."""
    path = tmp_path / "outbox.db"
    heads: list[int] = []
    for delay in (0.3, 0.45, 0.2, 0.6, 0.35):
        writer = subprocess.Popen(
            [sys.executable, "-m", "tests.support.outbox_writer", str(path), *DEVICES]
        )
        time.sleep(1.0 + delay)  # interpreter start-up, then a while of writing
        writer.kill()
        writer.wait(timeout=10)
        outbox = Outbox(path)
        for device in DEVICES:
            head_seq, head_hash = outbox.head(device)
            entries = outbox.between(device, 1, head_seq + 1000)
            events = [orjson.loads(entry.wire) for entry in entries]
            assert [event["seq"] for event in events] == list(range(1, head_seq + 1))
            verdict = verify_chain(link_of_wire_event(event) for event in events)
            assert verdict.status is ChainStatus.VERIFIED, verdict.problem
            assert verdict.last_hash == head_hash
        heads.append(outbox.head(DEVICES[0])[0])
        outbox.close()
    assert heads == sorted(heads)
    assert heads[0] > 0, "the writer never got going: the test proved nothing"
    assert len(set(heads)) == len(heads), "a restart wrote nothing"
