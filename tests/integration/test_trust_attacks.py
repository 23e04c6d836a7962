"""The trust chain against an operator with the database's superuser rights and the
platform's log key (issue "Audit trust beyond the operator"), on both databases.

Each attack starts from the same platform: HP-000011's unsealed stream, HP-000014's
registry and sealed stream (the protocol vector), logged and checkpointed.  The
auditor keeps that checkpoint (``coreline audit checkpoint``) and checks a bundle of
the untouched store; then the operator attacks, and a re-exported bundle checked by
``coreline-verify`` against the kept checkpoint, the export itself, or ``coreline
audit witness`` exits 1 naming what failed."""

import subprocess
from dataclasses import dataclass
from pathlib import Path

from schemas import seal
from services.api.commands import revoke_key
from services.eventstore import EventStore, StreamSeal
from tests.integration.test_evidence_export import (
    Platform,
    append_unsealed,
    sealed_platform,
    vector_event,
    verify,
)
from tests.support.log_keeping import log_and_sign
from tests.support.streams import device_stream
from tests.support.tamper import as_attacker

DEVICE = "HP-000014"


@dataclass(frozen=True)
class Audited:
    """The platform before the attack, and what the auditor kept from it."""

    platform: Platform
    kept: Path
    witness_state: Path

    def reexport(self) -> tuple[Path, subprocess.CompletedProcess[str]]:
        return self.platform.export("after.jsonl", "--device", DEVICE, "--witness", str(self.kept))

    def witness(self) -> subprocess.CompletedProcess[str]:
        return self.platform.coreline("audit", "witness", "--state", str(self.witness_state))


def audited(
    store: EventStore,
    store_url: str,
    tmp_path: Path,
    vectors_dir: Path,
    *,
    batches: int = 4,
    witnessed: bool = False,
) -> Audited:
    """The platform, its checkpoint kept by the auditor (as a file, and in a witness's
    state when ``witnessed``), and a bundle of the untouched store that verifies
    against it."""
    platform = sealed_platform(store, store_url, tmp_path, vectors_dir, batches=batches)
    kept = platform.keep_checkpoint("kept.note")
    state = tmp_path / "witness"
    if witnessed:
        first = platform.coreline("audit", "witness", "--state", str(state))
        assert first.returncode == 0, first.stderr
    bundle, exported = platform.export("before.jsonl", "--device", DEVICE, "--witness", str(kept))
    assert exported.returncode == 0, exported.stderr
    clean = verify(bundle, kept)
    assert clean.returncode == 0, clean.stderr
    return Audited(platform, kept, state)


def failure(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, (result.stdout, result.stderr)
    return result.stderr


def test_an_event_altered_with_every_later_hash_recomputed(
    store: EventStore, store_url: str, tmp_path: Path, vectors_dir: Path
) -> None:
    """Seq 20's cores changed and seqs 20–37 re-hashed into a valid chain in the
    database: the re-exported bundle's seq 20 is not the event the log holds."""
    audit = audited(store, store_url, tmp_path, vectors_dir)
    statements = []
    prev_hash = store.read_stream(DEVICE, 19, 19)[0].hash
    for stored in store.read_stream(DEVICE, 20):
        fields = stored.sealed().to_wire()
        del fields["hash"]
        fields["prev_hash"] = prev_hash
        if stored.seq == 20:
            fields["data"] = {**fields["data"], "cores": fields["data"]["cores"] + 3}
        forged = seal(fields)
        prev_hash = forged.hash
        statements.append(
            (
                "UPDATE events SET body = %s, hash = %s, prev_hash = %s "
                "WHERE stream_id = %s AND seq = %s",
                (forged.body, forged.hash, fields["prev_hash"], DEVICE, stored.seq),
            )
        )
    as_attacker(store_url, *statements)
    bundle, exported = audit.reexport()
    assert exported.returncode == 0, exported.stderr
    failed = failure(verify(bundle, audit.kept))
    assert "HP-000014 seq 20: inclusion proof does not lead to the checkpoint's root" in failed


def test_the_newest_events_deleted(
    store: EventStore, store_url: str, tmp_path: Path, vectors_dir: Path
) -> None:
    """Seqs 31–37 deleted: the export names the logged events the store lost; the log
    then rebuilt and re-signed to match, the witness reports that it shrank."""
    audit = audited(store, store_url, tmp_path, vectors_dir, witnessed=True)
    as_attacker(store_url, ("DELETE FROM events WHERE stream_id = %s AND seq > %s", (DEVICE, 30)))
    _, refused = audit.reexport()
    assert "HP-000014 seq 31–37: logged under the checkpoint" in failure(refused)
    assert "events were deleted from the store" in refused.stderr
    rebuilt = audit.platform.coreline("audit", "rebuild-log", "--discard-contradicted")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert "INCONSISTENT: the log shrank: size 70 is smaller than the kept 77" in failure(
        audit.witness()
    )


def test_a_whole_stream_deleted(
    store: EventStore, store_url: str, tmp_path: Path, vectors_dir: Path
) -> None:
    """HP-000014's registry stream deleted (its key with it, which would leave the
    device looking unsigned): the export names the lost stream; HP-000011 deleted
    whole and the log rebuilt, the witness reports a log inconsistent with its own."""
    audit = audited(store, store_url, tmp_path, vectors_dir, witnessed=True)
    as_attacker(
        store_url,
        ("DELETE FROM events WHERE stream_id = %s", (f"registry:{DEVICE}",)),
        ("DELETE FROM events WHERE stream_id = %s", ("HP-000011",)),
    )
    _, refused = audit.reexport()
    assert f"registry:{DEVICE} seq 1–1: logged under the checkpoint" in failure(refused)
    rebuilt = audit.platform.coreline("audit", "rebuild-log", "--discard-contradicted")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert "INCONSISTENT: the log shrank: size 37 is smaller than the kept 77" in failure(
        audit.witness()
    )


def test_a_forged_event_appended_to_a_sealed_device(
    store: EventStore, store_url: str, tmp_path: Path, vectors_dir: Path
) -> None:
    """Two events with a correct chain inserted after seq 37 and logged: no seal of
    the device covers them, and the verifier says so."""
    audit = audited(store, store_url, tmp_path, vectors_dir)
    head = store.head(DEVICE)
    assert head is not None
    store.append(device_stream(DEVICE, 2, first_seq=38, prev_hash=head.hash))
    log_and_sign(store, store_url, audit.platform.key)
    bundle, exported = audit.reexport()
    assert exported.returncode == 0, exported.stderr
    assert "HP-000014 seq 38–39: no seal covers these events" in failure(verify(bundle, audit.kept))


def test_the_log_rebuilt_and_re_signed_after_a_deletion(
    store: EventStore, store_url: str, tmp_path: Path, vectors_dir: Path
) -> None:
    """HP-000011's newest events deleted, the log rebuilt and re-signed with the
    platform's key, and grown past the kept size: a bundle against the new log carries
    a consistency proof from the kept checkpoint that cannot verify (a split view), and
    the witness reports the same."""
    audit = audited(store, store_url, tmp_path, vectors_dir, witnessed=True)
    as_attacker(
        store_url, ("DELETE FROM events WHERE stream_id = %s AND seq > %s", ("HP-000011", 30))
    )
    rebuilt = audit.platform.coreline("audit", "rebuild-log", "--discard-contradicted")
    assert rebuilt.returncode == 0, rebuilt.stderr
    append_unsealed(store, vectors_dir, "HP-000012")
    log_and_sign(store, store_url, audit.platform.key)
    bundle, exported = audit.reexport()
    assert exported.returncode == 0, exported.stderr
    failed = failure(verify(bundle, audit.kept))
    assert "witness 1 (size 77): the consistency proof does not lead from size 77" in failed
    assert "inconsistent: the proof from size 77 to 93 does not verify" in failure(audit.witness())


def test_a_seal_by_a_key_revoked_earlier(
    store: EventStore, store_url: str, tmp_path: Path, vectors_dir: Path
) -> None:
    """The key revoked after seq 20, then seqs 21–30 inserted with the vector's seal
    at 30 by that key (a forged batch the gateway would refuse): the verifier refuses
    the seal of a key revoked before the event was logged."""
    audit = audited(store, store_url, tmp_path, vectors_dir, batches=2)
    vector = audit.platform.vector
    revoke_key(store, DEVICE, vector.key_id, "compromised", "user:qa")
    events = [vector_event(event) for event in vector.events()[20:30]]
    sig = vector.document["batches"][2]["seal"]["sig"]
    store.append(events, seals=[StreamSeal(DEVICE, 30, events[-1].hash, vector.key_id, sig)])
    assert [seal.seq for seal in store.read_seals(DEVICE)] == [10, 20, 30]
    log_and_sign(store, store_url, audit.platform.key)
    bundle, exported = audit.reexport()
    assert exported.returncode == 0, exported.stderr
    failed = failure(verify(bundle, audit.kept))
    assert f"HP-000014 seq 30: seal by key {vector.key_id}, revoked before this event" in failed
