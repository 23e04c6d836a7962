"""The log's API (DESIGN §11): the latest and any kept checkpoint as signed notes, the
verifier key, and inclusion and consistency proofs that verify against them; an
inclusion proof follows the event's scope, so a clinic gets proofs only for the
events it may see."""

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from services.eventstore import Cursor, open_event_store
from services.merkle_log import LogKeeper, MerkleLog, create_key_file, load_signer
from services.transparency import (
    Checkpoint,
    Verifier,
    leaf_hash,
    verify_consistency,
    verify_inclusion,
)
from tests.support.api_client import api_client, bearer
from tests.support.api_world import CLINIC_A, DEVICES, World, build_world

ORIGIN = "coreline/log/v1"


@pytest.fixture
def logged_world(store_url: str, tmp_path: Path) -> Iterator[tuple[World, TestClient, list[int]]]:
    """A projected world whose log is kept, with a checkpoint signed after the first
    half of its events and another after all of them."""
    key = tmp_path / "coreline-log.key"
    create_key_file(key, ORIGIN)
    world = build_world(store_url, hours=1.0)
    store, merkle_log = open_event_store(store_url), MerkleLog.open(store_url)
    keeper = LogKeeper(store, merkle_log, load_signer(key, ORIGIN), batch_size=100)
    keeper.step()
    first = keeper.sign_if_due(now=True)
    keeper.catch_up()
    last = keeper.sign_if_due(now=True)
    assert first is not None
    assert last is not None
    store.close()
    merkle_log.close()
    with api_client(store_url, log_key=key) as client:
        yield world, client, [first.size, last.size]


def _verifier(client: TestClient, token: str) -> Verifier:
    answer = client.get("/api/v1/log/public-key", headers=bearer(token))
    assert answer.status_code == 200
    return Verifier.parse(answer.text)


def test_checkpoints_are_served_as_signed_notes(
    logged_world: tuple[World, TestClient, list[int]],
) -> None:
    """Every principal reads the latest checkpoint and any kept one; each verifies
    under the served key; an unknown size is 404 and no token is 401."""
    world, client, sizes = logged_world
    assert len(sizes) == 2
    for name in ("manufacturer", "clinic_a", "auditor_a"):
        headers = bearer(world.tokens[name])
        latest = client.get("/api/v1/log/checkpoint", headers=headers)
        assert latest.status_code == 200
        assert latest.headers["content-type"].startswith("text/plain")
        checkpoint = Checkpoint.parse(_verifier(client, world.tokens[name]).verify(latest.text))
        assert (checkpoint.origin, checkpoint.size) == (ORIGIN, sizes[-1])
        first = client.get(f"/api/v1/log/checkpoints/{sizes[0]}", headers=headers)
        assert (
            Checkpoint.parse(_verifier(client, world.tokens[name]).verify(first.text)).size == 100
        )
    assert client.get("/api/v1/log/checkpoints/7", headers=headers).status_code == 404
    assert client.get("/api/v1/log/checkpoint").status_code == 401


def test_inclusion_proofs_verify_and_follow_the_events_scope(
    logged_world: tuple[World, TestClient, list[int]], store_url: str
) -> None:
    """The manufacturer's proof for any event, a device's or the platform's, verifies
    against the latest checkpoint; clinic A gets its own devices' proofs, and 404 for
    clinic B's device, an unowned device and platform streams."""
    world, client, sizes = logged_world
    store = open_event_store(store_url)
    records = store.read_records(Cursor.START, 100_000)
    store.close()
    manufacturer, clinic_a = bearer(world.tokens["manufacturer"]), bearer(world.tokens["clinic_a"])
    root = Checkpoint.parse(client.get("/api/v1/log/checkpoint", headers=manufacturer).text).root
    platform = next(record for record in records if record.stream_id.startswith("registry:"))
    own = next(record for record in records if DEVICES.get(record.stream_id) == CLINIC_A)
    others = [record for record in records if record.stream_id in ("HP-000201", "HP-000301")]
    for record in [platform, own, *others[:3], records[-1]]:
        answer = client.get(
            "/api/v1/log/proofs/inclusion",
            params={"stream_id": record.stream_id, "seq": record.seq},
            headers=manufacturer,
        )
        assert answer.status_code == 200, answer.text
        proof = answer.json()
        assert proof["tree_size"] == sizes[-1]
        path = [base64.b64decode(hash_) for hash_ in proof["audit_path"]]
        leaf = leaf_hash(bytes.fromhex(record.hash))
        assert verify_inclusion(leaf, proof["leaf_index"], sizes[-1], path, root)
    mine: dict[str, str | int] = {"stream_id": own.stream_id, "seq": own.seq}
    assert (
        client.get("/api/v1/log/proofs/inclusion", params=mine, headers=clinic_a).status_code == 200
    )
    for record in (platform, *(record for record in others if record.seq == 1)):
        theirs: dict[str, str | int] = {"stream_id": record.stream_id, "seq": record.seq}
        answer = client.get("/api/v1/log/proofs/inclusion", params=theirs, headers=clinic_a)
        assert answer.status_code == 404, record.stream_id
    early: dict[str, str | int] = {
        "stream_id": records[-1].stream_id,
        "seq": records[-1].seq,
        "size": sizes[0],
    }
    answer = client.get("/api/v1/log/proofs/inclusion", params=early, headers=manufacturer)
    assert answer.status_code == 404  # logged after the first checkpoint


def test_consistency_proofs_verify_between_kept_checkpoints(
    logged_world: tuple[World, TestClient, list[int]],
) -> None:
    """The proof between the two kept checkpoints verifies; from past to is 400, a size
    the log has not reached 404."""
    world, client, sizes = logged_world
    headers = bearer(world.tokens["clinic_b"])
    notes = [client.get(f"/api/v1/log/checkpoints/{size}", headers=headers).text for size in sizes]
    old, new = (Checkpoint.parse(note.split("\n\n")[0] + "\n") for note in notes)
    answer = client.get(
        "/api/v1/log/proofs/consistency", params={"from": old.size, "to": new.size}, headers=headers
    )
    assert answer.status_code == 200
    proof = [base64.b64decode(hash_) for hash_ in answer.json()["proof"]]
    assert verify_consistency(old.size, new.size, old.root, new.root, proof)
    backwards = {"from": new.size, "to": old.size}
    assert (
        client.get("/api/v1/log/proofs/consistency", params=backwards, headers=headers).status_code
        == 400
    )
    beyond = {"from": old.size, "to": new.size + 1}
    assert (
        client.get("/api/v1/log/proofs/consistency", params=beyond, headers=headers).status_code
        == 404
    )
