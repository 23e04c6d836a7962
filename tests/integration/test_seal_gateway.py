"""Device seals end to end (DESIGN §4.1): ``coreline device key add/revoke`` record
registry events, ``coreline gateway`` between a real Mosquitto and a real store
verifies the independent sealed vector and dead-letters its invalid batches with
reason ``signature``, and ``coreline verify`` reports each stream's seal coverage."""

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import orjson

from schemas.streams import device_stream, registry_stream
from services.eventstore import EventStore, open_event_store
from tests.support.mosquitto import TemporaryMosquitto
from tests.support.platform_processes import GatewayProcess
from tests.support.publisher import Publisher
from tests.support.sealed_vectors import ingest, load_sealed
from tests.support.vectors import batch_payload, load_stream


def _coreline(*args: str, database_url: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("CORELINE_")}
    env["CORELINE_DATABASE_URL"] = database_url
    command = [sys.executable, "-m", "services", *args]
    return subprocess.run(
        command, capture_output=True, text=True, env=env, timeout=120, check=False
    )


def _wait(predicate: Callable[[], bool], timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def _stored(store: EventStore, device_id: str) -> int:
    head = store.head(device_stream(device_id))
    return 0 if head is None else head.seq


def test_the_sealed_vector_through_the_gateway(
    store_url: str, vectors_dir: Path, tmp_path: Path
) -> None:
    """With the vector's key registered on the command line, its four sealed batches
    are stored with their seals while each invalid batch is dead-lettered whole with
    reason ``signature``; a device without a key is still accepted unsealed; verify
    says ``signed through seq 37`` and ``unsigned``."""
    vector = load_sealed(vectors_dir)
    added = _coreline(
        "device", "key", "add", vector.device_id, "--public-key", vector.public_key,
        database_url=store_url,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    unsealed = load_stream(vectors_dir, "HP-000011")
    store = open_event_store(store_url)
    batches = vector.batches()
    invalid = vector.invalid()
    messages = [(vector.topic, batches[0]), *((vector.topic, p) for _, p in invalid)]
    messages += [(vector.topic, payload) for payload in batches[1:]]
    plain_topic = "coreline/v1/devices/HP-000011/events"
    messages.append((plain_topic, batch_payload("HP-000011", unsealed["events"])))
    with TemporaryMosquitto() as broker:
        gateway = GatewayProcess(store_url, broker, tmp_path / "gateway.log")
        try:
            with Publisher(broker.port) as publisher:
                for topic, payload in messages:
                    publisher.publish(topic, payload)
            assert _wait(lambda: _stored(store, vector.device_id) == 37), (
                [(d.reason, d.detail) for d in store.dead_letters()],
            )
            assert _wait(lambda: _stored(store, "HP-000011") == unsealed["expected"]["last_seq"])
            assert _wait(lambda: len(store.dead_letters()) == len(invalid))
        finally:
            gateway.stop()
    letters = store.dead_letters()
    assert [letter.reason for letter in letters] == ["signature"] * len(invalid)
    assert sorted(letter.raw for letter in letters) == sorted(payload for _, payload in invalid)
    assert [seal.seq for seal in store.read_seals(vector.device_id)] == [10, 20, 30, 37]
    last = store.read_stream(vector.device_id, from_seq=37)[0]
    assert last.hash == vector.document["expected"]["last_hash"]
    store.close()

    verified = _coreline("verify", "--all", database_url=store_url)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    lines = [" ".join(line.split()) for line in verified.stdout.splitlines()]
    assert "HP-000014 signed through seq 37" in lines
    assert "HP-000011 unsigned" in lines


def test_key_add_and_revoke_are_registry_events(store_url: str, vectors_dir: Path) -> None:
    """The CLI records ``device.key_registered`` and ``device.key_revoked`` in the
    device's registry stream, the revocation with the highest seq the key sealed;
    the stream's earlier seals still verify afterwards."""
    vector = load_sealed(vectors_dir)
    device = vector.device_id
    key_args = ("device", "key")
    added = _coreline(*key_args, "add", device, "--public-key", vector.public_key,
                      database_url=store_url)  # fmt: skip
    assert added.returncode == 0, added.stderr
    again = _coreline(*key_args, "add", device, "--public-key", vector.public_key,
                      database_url=store_url)  # fmt: skip
    assert again.returncode == 2
    assert "registered" in again.stderr
    store = open_event_store(store_url)
    ingest(store, [(vector.topic, payload) for payload in vector.batches()[:2]])
    revoked = _coreline(*key_args, "revoke", device, "--key-id", vector.key_id,
                        "--reason", "board lost", database_url=store_url)  # fmt: skip
    assert revoked.returncode == 0, revoked.stderr
    registry = store.read_stream(registry_stream(device))
    assert [event.type for event in registry] == ["device.key_registered", "device.key_revoked"]
    data = orjson.loads(registry[0].body)["data"]
    assert (data["key_id"], data["public_key"], data["algorithm"]) == (
        vector.key_id, vector.public_key, "ed25519",
    )  # fmt: skip
    revocation = orjson.loads(registry[1].body)["data"]
    assert (revocation["key_id"], revocation["reason"]) == (vector.key_id, "board lost")
    assert revocation["sealed_through"] == 20
    ingest(store, [(vector.topic, payload) for payload in vector.batches()[2:]])
    assert _stored(store, device) == 20
    assert {letter.reason for letter in store.dead_letters()} == {"signature"}
    store.close()
    verified = _coreline("verify", "--device", device, database_url=store_url)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert f"{device}  signed through seq 20" in verified.stdout.splitlines()
