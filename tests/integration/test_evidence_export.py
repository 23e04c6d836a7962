"""``coreline audit export`` on a real store and log, on both databases: the bundles
of the sealed vector's session and device, checked by ``coreline-verify``, which
prints the vector's own figures; witnesses given at export are proved consistent;
an export the log cannot back yet is refused, naming why; and the auditors' API
streams the same bundle."""

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from uuid import uuid4

from sqlalchemy import create_engine

from schemas import SealedEvent, device_topic, seal
from schemas.topics import DeviceChannel
from services.api import Role, create_token
from services.api.commands import register_key
from services.eventstore import EventStore
from services.evidence import Scope, plan_export
from services.evidence.export import StreamRange
from services.merkle_log import MerkleLog, create_key_file, load_signer, load_verifier
from services.transparency import Checkpoint
from tests.support.api_client import api_client, bearer
from tests.support.log_keeping import log_and_sign
from tests.support.sealed_vectors import SealedVector, ingest, load_sealed
from tests.support.vectors import batch_payload, load_stream

ORIGIN = "coreline/log/v1"


def coreline(*args: str, key: Path, database_url: str) -> subprocess.CompletedProcess[str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("CORELINE_")}
    env |= {"CORELINE_DATABASE_URL": database_url, "CORELINE_LOG_KEY_FILE": str(key)}
    argv = [sys.executable, "-m", "services", *args]
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120, check=False)


def verify(bundle: Path, *witnesses: Path) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "coreline_verify", str(bundle)]
    for witness in witnesses:
        argv += ["--witness", str(witness)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)


def vector_event(event: dict[str, object]) -> SealedEvent:
    """A vector's event as the store takes it (its hash recomputed: the same)."""
    sealed = seal({name: value for name, value in event.items() if name != "hash"})
    assert sealed.hash == event["hash"]
    return sealed


def append_unsealed(store: EventStore, vectors_dir: Path, device_id: str) -> None:
    """Another device's whole stream, unsealed (protocol v1), through the ingest core."""
    events = load_stream(vectors_dir, device_id)["events"]
    topic = device_topic(device_id, DeviceChannel.EVENTS)
    ingest(store, [(topic, batch_payload(device_id, events))], one_by_one=False)


@dataclass(frozen=True)
class Platform:
    store: EventStore
    url: str
    key: Path
    vector: SealedVector
    tmp: Path

    def coreline(self, *args: str) -> subprocess.CompletedProcess[str]:
        return coreline(*args, key=self.key, database_url=self.url)

    def export(self, name: str, *args: str) -> tuple[Path, subprocess.CompletedProcess[str]]:
        out = self.tmp / name
        return out, self.coreline("audit", "export", *args, "--out", str(out))

    def keep_checkpoint(self, name: str) -> Path:
        """What an auditor keeps: the latest checkpoint, by ``coreline audit checkpoint``."""
        kept = self.tmp / name
        written = self.coreline("audit", "checkpoint", "--out", str(kept))
        assert written.returncode == 0, written.stderr
        return kept


def sealed_platform(
    store: EventStore, store_url: str, tmp_path: Path, vectors_dir: Path, *, batches: int = 4
) -> Platform:
    """A store holding HP-000011's unsealed stream, then HP-000014's registry (its key
    registered) and the first ``batches`` sealed batches of the vector; logged, with a
    checkpoint signed by the platform's key."""
    key = tmp_path / "keys" / "coreline-log.key"
    assert create_key_file(key, ORIGIN)
    vector = load_sealed(vectors_dir)
    append_unsealed(store, vectors_dir, "HP-000011")
    register_key(store, vector.device_id, vector.public_key, "user:qa")
    ingest(store, [(vector.topic, batch) for batch in vector.batches()[:batches]])
    head = store.head(vector.device_id)
    assert head is not None
    assert head.seq == min(10 * batches, 37)
    log_and_sign(store, store_url, key)
    return Platform(store, store_url, key, vector, tmp_path)


def test_session_and_device_bundles_verify_with_the_vectors_figures(
    store: EventStore, store_url: str, tmp_path: Path, vectors_dir: Path
) -> None:
    """The session bundle holds the registry then seq 2 (the cartridge's installation)
    through 37 (the seal after session.ended), and coreline-verify accepts it printing
    the vector's expected figures; the device bundle holds the whole stream and verifies
    too."""
    platform = sealed_platform(store, store_url, tmp_path, vectors_dir)
    expected = platform.vector.document["expected"]
    bundle, exported = platform.export("session.jsonl", "--session", expected["session_id"])
    assert exported.returncode == 0, exported.stderr
    lines = [json.loads(line) for line in bundle.read_text().splitlines()]
    streams = [line["stream"] for line in lines if "stream" in line]
    assert streams == [
        {"id": "registry:HP-000014", "first_seq": 1, "last_seq": 1},
        {"id": "HP-000014", "first_seq": 2, "last_seq": 37},
    ]
    checked = verify(bundle)
    assert checked.returncode == 0, checked.stderr
    assert (
        f"HP-000014 session {expected['session_id']}: cores counted {expected['cores_counted']}, "
        f"reported {expected['cores_reported']}, reconciled yes, "
        f"coverage {expected['coverage_pct']:.4f}%"
    ) in checked.stdout
    device_bundle, exported = platform.export("device.jsonl", "--device", "HP-000014")
    assert exported.returncode == 0, exported.stderr
    assert '{"stream":{"id":"HP-000014","first_seq":1,"last_seq":37}}' in device_bundle.read_text()
    checked = verify(device_bundle)
    assert checked.returncode == 0, checked.stderr
    assert "sealed through seq 37" in checked.stdout


def test_a_witness_kept_earlier_is_proved_consistent(
    store: EventStore, store_url: str, tmp_path: Path, vectors_dir: Path
) -> None:
    """A checkpoint kept before the log grew: the export carries its consistency proof,
    and coreline-verify given that checkpoint accepts the bundle."""
    platform = sealed_platform(store, store_url, tmp_path, vectors_dir, batches=2)
    kept = platform.keep_checkpoint("kept.note")
    ingest(store, [(platform.vector.topic, batch) for batch in platform.vector.batches()[2:]])
    append_unsealed(store, vectors_dir, "HP-000012")
    log_and_sign(store, store_url, platform.key)
    bundle, exported = platform.export(
        "device.jsonl", "--device", "HP-000014", "--witness", str(kept)
    )
    assert exported.returncode == 0, exported.stderr
    header = json.loads(bundle.read_text().split("\n", 1)[0])
    assert [witness["checkpoint"] for witness in header["witnesses"]] == [kept.read_text()]
    checked = verify(bundle, kept)
    assert checked.returncode == 0, checked.stderr
    # The bundle's witness, and the file given to the verifier.
    assert "2 witnessed checkpoints consistent with it" in checked.stdout


def test_an_export_the_log_cannot_back_is_refused(
    store: EventStore, store_url: str, tmp_path: Path, vectors_dir: Path
) -> None:
    """Events stored after the latest checkpoint, a witness checkpoint ahead of the log
    or signed by another key: the export exits 1 saying so, and leaves no file."""
    platform = sealed_platform(store, store_url, tmp_path, vectors_dir, batches=3)
    ingest(store, [(platform.vector.topic, platform.vector.batches()[3])])
    bundle, refused = platform.export("device.jsonl", "--device", "HP-000014")
    assert refused.returncode == 1
    assert "HP-000014 seq 37 is not covered by the latest checkpoint" in refused.stderr
    assert not bundle.exists()
    log_and_sign(store, store_url, platform.key)
    latest = MerkleLog.open(store_url)
    size = latest.size()
    latest.close()
    ahead = tmp_path / "ahead.note"
    ahead.write_text(load_signer(platform.key, ORIGIN).sign(_checkpoint(size + 5)))
    _, refused = platform.export("device.jsonl", "--device", "HP-000014", "--witness", str(ahead))
    assert refused.returncode == 1
    assert f"is larger than the log's latest (size {size})" in refused.stderr
    foreign = tmp_path / "foreign.note"
    other = tmp_path / "other" / "coreline-log.key"
    assert create_key_file(other, ORIGIN)
    foreign.write_text(load_signer(other, ORIGIN).sign(_checkpoint(3)))
    _, refused = platform.export("device.jsonl", "--device", "HP-000014", "--witness", str(foreign))
    assert refused.returncode == 1
    assert "is not signed by the platform's log key" in refused.stderr
    assert not bundle.exists()


def _checkpoint(size: int) -> str:
    return Checkpoint(ORIGIN, size, bytes(32)).text()


def test_the_api_streams_the_same_bundle_to_fleet_auditors(
    store: EventStore, store_url: str, tmp_path: Path, vectors_dir: Path
) -> None:
    """GET /api/v1/audit/evidence streams the bundle the command writes, which
    coreline-verify accepts; a clinic-scoped auditor is refused (403), an unknown
    session is a 404."""
    platform = sealed_platform(store, store_url, tmp_path, vectors_dir)
    session_id = platform.vector.document["expected"]["session_id"]
    engine = create_engine(store_url.replace("postgresql://", "postgresql+psycopg://"))
    _, fleet = create_token(engine, Role.AUDITOR, None, "evidence")
    _, clinic = create_token(engine, Role.AUDITOR, "clinic-a", "evidence")
    engine.dispose()
    with api_client(store_url, log_key=platform.key) as client:
        path = f"/api/v1/audit/evidence?session_id={session_id}"
        response = client.get(path, headers=bearer(fleet))
        assert response.status_code == 200, response.text
        refused = client.get(path, headers=bearer(clinic))
        assert refused.status_code == 403
        unknown = client.get(f"/api/v1/audit/evidence?session_id={uuid4()}", headers=bearer(fleet))
        assert unknown.status_code == 404
    bundle, exported = platform.export("session.jsonl", "--session", session_id)
    assert exported.returncode == 0, exported.stderr
    assert response.content == bundle.read_bytes()
    served = tmp_path / "served.jsonl"
    served.write_bytes(response.content)
    assert verify(served).returncode == 0


def test_a_session_is_planned_the_same_from_any_hint_of_its_device(
    store: EventStore, store_url: str, tmp_path: Path, vectors_dir: Path
) -> None:
    """Where a read model says a session is only decides which stream is read first: a
    hint naming another device's stream, or no stream, plans the same bundle."""
    platform = sealed_platform(store, store_url, tmp_path, vectors_dir)
    scope = Scope("session", session_id=platform.vector.document["expected"]["session_id"])
    verifier = load_verifier(platform.key, ORIGIN)
    merkle_log = MerkleLog.open(store_url)
    try:
        plans = [
            plan_export(store, merkle_log, verifier, scope, session_device=hint)
            for hint in (None, "HP-000014", "HP-000011", "HP-999999")
        ]
    finally:
        merkle_log.close()
    assert plans[0].streams[-1] == StreamRange("HP-000014", 2, 37)
    assert all(plan.streams == plans[0].streams for plan in plans)
