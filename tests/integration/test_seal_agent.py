"""``coreline agent --key-file`` seals every batch and every resend (DESIGN §4.1),
against a real Mosquitto; ``coreline device key generate`` makes the key."""

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from schemas import decode_event_batch
from schemas.seals import public_key_of_text
from seal_keys import PublicSealKey, verify_claim
from tests.support.mosquitto import TemporaryMosquitto
from tests.support.streams import punch_data
from tests.support.subscriber import RecordingSubscriber

DEVICE = "HP-000930"
EVENTS = f"coreline/v1/devices/{DEVICE}/events"


@pytest.fixture
def broker() -> Iterator[TemporaryMosquitto]:
    with TemporaryMosquitto() as server:
        yield server


def _env() -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if not key.startswith("CORELINE_")}


def _seqs(payload: bytes) -> list[int]:
    return [event["seq"] for event in orjson.loads(payload)["events"]]


def test_agent_batches_and_resends_carry_valid_seals(
    broker: TemporaryMosquitto, tmp_path: Path
) -> None:
    """Every batch the agent publishes, the answer to a resend command included, is
    sealed over its last event by the key ``device key generate`` made."""
    key_file = tmp_path / "device.pem"
    made = subprocess.run(
        [sys.executable, "-m", "services", "device", "key", "generate", "--out", str(key_file)],
        capture_output=True, text=True, env=_env(), timeout=60, check=False,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    public = PublicSealKey(public_key_of_text(made.stdout.strip().splitlines()[-1]))
    assert f"key id: {public.key_id}" in made.stderr
    lines = [
        {"type": "cores.punched", "occurred_at": f"2026-11-25T09:00:{n:02d}.000Z",
         "data": punch_data(n)}
        for n in range(1, 13)
    ]  # fmt: skip
    command = [sys.executable, "-m", "services", "agent", "--device-id", DEVICE,
               "--mqtt-url", broker.url, "--outbox", str(tmp_path / "outbox.db"),
               "--key-file", str(key_file)]  # fmt: skip
    with RecordingSubscriber(broker.port, EVENTS) as subscriber:
        agent = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=_env(),
        )  # fmt: skip
        try:
            assert agent.stdin is not None
            agent.stdin.write(b"".join(orjson.dumps(line) + b"\n" for line in lines))
            agent.stdin.flush()
            assert subscriber.wait_for(
                lambda s: {seq for _, p in s.messages for seq in _seqs(p)} >= set(range(1, 13))
            )
            published = len(subscriber.messages)
            resend = b'{"cmd":"resend","from_seq":3,"to_seq":7}'
            subscriber.publish(f"coreline/v1/devices/{DEVICE}/cmd", resend)
            assert subscriber.wait_for(
                lambda s: any(_seqs(p) == [3, 4, 5, 6, 7] for _, p in s.messages[published:])
            )
        finally:
            agent.send_signal(signal.SIGINT)
            agent.communicate(timeout=30)
    for _, payload in subscriber.messages:
        decoded = decode_event_batch(DEVICE, payload)
        assert decoded.rejections == ()
        assert decoded.seal is not None, payload
        assert decoded.seal.seal.seq == _seqs(payload)[-1]
        assert verify_claim(public, decoded.seal)
