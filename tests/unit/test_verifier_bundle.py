"""coreline-verify over evidence bundles built from the protocol vectors: a clean
bundle verifies and states each session's facts; every kind of tampering fails,
naming what failed, whether the bytes are checked in this process or in workers."""

import json
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from coreline_verify import CheckFailed, Witness, seal_message, verify_file
from coreline_verify.cli import main
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bench.evidence_bundle import build_bundle
from schemas import event_hash
from tests.support.evidence_log import (
    BundleSource,
    LogSigner,
    MerkleLog,
    b64url,
    sealed_source,
    sealed_vector,
    stream_vector,
    vector_events,
)

DEVICE = "HP-000014"


@pytest.fixture(params=[1, 2], ids=["in-process", "workers"])
def jobs(request: pytest.FixtureRequest) -> int:
    jobs: int = request.param
    return jobs


def _lines(data: bytes) -> list[bytes]:
    return data.split(b"\n")[:-1]


def _join(lines: list[bytes]) -> bytes:
    return b"".join(line + b"\n" for line in lines)


def _event_position(lines: list[bytes], stream_id: str, seq: int) -> int:
    current, seen = None, 0
    for position, line in enumerate(lines):
        if line.startswith(b'{"stream":'):
            current, seen = json.loads(line)["stream"]["id"], 0
        elif line.startswith(b'{"log_index":') and current == stream_id:
            seen += 1
            if json.loads(line)["event"]["seq"] == seq:
                return position
    raise AssertionError(f"no {stream_id} seq {seq}")


def _verify(tmp_path: Path, data: bytes, jobs: int = 1, **options: Any) -> list[str]:
    path = tmp_path / "bundle.jsonl"
    path.write_bytes(data)
    printed: list[str] = []
    verify_file(path, jobs=jobs, emit=printed.append, **options)
    return printed


def _fails(tmp_path: Path, data: bytes, jobs: int, message: str, **options: Any) -> None:
    with pytest.raises(CheckFailed) as failure:
        _verify(tmp_path, data, jobs, **options)
    assert str(failure.value) == message


def _facts_line(expected: dict[str, Any]) -> str:
    reconciled = "yes" if expected["reconciled"] else "no"
    return (
        f"{expected['device_id']} session {expected['session_id']}: cores counted "
        f"{expected['cores_counted']}, reported {expected['cores_reported']}, "
        f"reconciled {reconciled}, coverage {expected['coverage_pct']:.4f}%"
    )


def test_a_clean_sealed_bundle_verifies_and_states_the_vectors_facts(
    tmp_path: Path, jobs: int
) -> None:
    """HP-000014's sealed stream verifies (bytes, links, seals, proofs, witnesses) and
    its session's counted and reported cores, reconciliation and coverage are the
    vector's ``expected``."""
    source = sealed_source(others=[stream_vector("HP-000011")])
    printed = _verify(tmp_path, source.bundle_bytes(witnesses=[1, 39, 60]), jobs)
    assert _facts_line(sealed_vector()["expected"]) in printed
    assert (
        f"{DEVICE} seq 1–37: 37 events, bytes, hashes, links and inclusion verified; "
        "sealed through seq 37 by c237fe2fd2925b9b"
    ) in printed


def test_the_test_log_hashes_as_the_vectors_tree() -> None:
    """The test-side tree over the sealed stream alone has the vector's root."""
    vector = sealed_vector()
    log = MerkleLog(bytes.fromhex(event["hash"]) for event in vector_events(vector))
    assert log.root().hex() == vector["tree"]["root_hex"]
    assert all(log.audit_path(i) == log.inclusion_proof(i) for i in range(log.size))


@pytest.mark.parametrize("device", ["HP-000011", "HP-000012", "HP-000013"])
def test_unsealed_streams_verify_as_unsigned_with_their_facts(tmp_path: Path, device: str) -> None:
    """v1 streams (no key registered) verify, are reported unsigned, and their facts
    match the vectors, HP-000013's mismatch included."""
    vector = stream_vector(device)
    events = vector_events(vector)
    printed = _verify(tmp_path, BundleSource(streams=[(device, events, [])]).bundle_bytes())
    assert _facts_line(vector["expected"]) in printed
    assert printed[-1].endswith("unsigned (the registry registers no seal key)")
    with pytest.raises(CheckFailed, match=f"{device}: unsigned"):
        _verify(
            tmp_path,
            BundleSource(streams=[(device, events, [])]).bundle_bytes(),
            require_seals=True,
        )


def test_a_range_from_the_cartridge_on_verifies_and_says_what_it_cannot_link(
    tmp_path: Path, jobs: int
) -> None:
    """A session's bundle from its cartridge's installation (seq 2) on verifies, with
    the session's facts, and states that seq 2's link to seq 1 is not checked."""
    source = sealed_source()
    registry_id, registry, _ = source.streams[0]
    stream_id, events, seals = source.streams[1]
    ranged = BundleSource(
        streams=[(registry_id, registry, []), (stream_id, events[1:], seals)], signer=source.signer
    )
    ranged.log, ranged.index_of = source.log, source.index_of  # the platform's whole log
    printed = _verify(tmp_path, ranged.bundle_bytes(), jobs)
    assert _facts_line(sealed_vector()["expected"]) in printed
    assert (
        f"{DEVICE} seq 2–37: 36 events, bytes, hashes, links and inclusion verified "
        "(seq 2's link to the events before it is not checked); "
        "sealed through seq 37 by c237fe2fd2925b9b"
    ) in printed


def test_a_registry_stream_must_be_whole(tmp_path: Path) -> None:
    """A registry stream given from seq 2 could hide a revocation: it fails."""
    source = sealed_source(revoked=True)
    registry_id, registry, _ = source.streams[0]
    partial = BundleSource(streams=[(registry_id, registry[1:], [])], signer=source.signer)
    partial.log, partial.index_of = source.log, source.index_of
    _fails(
        tmp_path,
        partial.bundle_bytes(),
        1,
        f"{registry_id}: a registry stream is given whole, from seq 1",
    )


def test_one_changed_byte_of_an_event_fails_its_hash(tmp_path: Path, jobs: int) -> None:
    """A digit changed in seq 7's stored bytes: its hash no longer matches them."""
    lines = _lines(sealed_source().bundle_bytes())
    position = _event_position(lines, DEVICE, 7)
    lines[position] = lines[position].replace(b'"actuations":', b'"actuations":1', 1)
    _fails(tmp_path, _join(lines), jobs, f"{DEVICE} seq 7: hash does not match its bytes")


def _relinked(
    events: list[dict[str, Any]], seq: int, change: Callable[[dict[str, Any]], None]
) -> list[dict[str, Any]]:
    """The stream with ``seq`` changed and every later hash and link recomputed."""
    relinked: list[dict[str, Any]] = []
    for original in events:
        event = json.loads(json.dumps(original))
        if relinked:
            event["prev_hash"] = relinked[-1]["hash"]
        if event["seq"] == seq:
            change(event)
        event["hash"] = event_hash(event)
        relinked.append(event)
    return relinked


def test_a_relinked_chain_with_recomputed_hashes_and_log_fails_the_seal(
    tmp_path: Path, jobs: int
) -> None:
    """An operator who rewrites seq 7, recomputes every later hash and link, and
    rebuilds and re-signs the log still cannot forge the device's seal over seq 10."""
    source = sealed_source()
    registry_id, registry, _ = source.streams[0]
    stream_id, events, seals = source.streams[1]

    def fewer_cores(event: dict[str, Any]) -> None:
        event["data"]["cores"] -= 3

    forged = BundleSource(
        streams=[
            (registry_id, registry, []),
            (stream_id, _relinked(events, 7, fewer_cores), seals),
        ],
        signer=source.signer,
    )
    _fails(
        tmp_path,
        forged.bundle_bytes(),
        jobs,
        f"{DEVICE} seq 10: seal by key c237fe2fd2925b9b does not verify",
    )


def test_a_dropped_event_breaks_the_sequence(tmp_path: Path, jobs: int) -> None:
    """Seq 7 removed from the bundle: the next event is not the one expected."""
    lines = _lines(sealed_source().bundle_bytes())
    del lines[_event_position(lines, DEVICE, 7)]
    _fails(
        tmp_path,
        _join(lines),
        jobs,
        f"{DEVICE} seq 7: the event says seq 8 (an event is missing or moved)",
    )


def test_a_dropped_last_event_is_not_covered(tmp_path: Path, jobs: int) -> None:
    """Seq 37 and its seal removed, the stream's stated range kept: the cut shows."""
    lines = _lines(sealed_source().bundle_bytes())
    position = _event_position(lines, DEVICE, 37)
    del lines[position : position + 2]
    _fails(
        tmp_path,
        _join(lines),
        jobs,
        f"{DEVICE}: the bundle states seq 1–37 but holds events through seq 36",
    )


def _replace_seal(lines: list[bytes], seq: int, seal: dict[str, Any]) -> None:
    position = _event_position(lines, DEVICE, seq) + 1
    assert lines[position].startswith(b'{"seal":')
    lines[position] = json.dumps({"seal": seal}).encode()


def test_a_forged_seal_fails(tmp_path: Path, jobs: int) -> None:
    """A seal over seq 20 signed by another key under the device's key id fails."""
    vector = sealed_vector()
    lines = _lines(sealed_source().bundle_bytes())
    seq20 = json.loads(lines[_event_position(lines, DEVICE, 20)])["hash"]
    signature = Ed25519PrivateKey.generate().sign(seal_message(DEVICE, 20, seq20))
    _replace_seal(lines, 20, {"seq": 20, "key_id": vector["key_id"], "sig": b64url(signature)})
    _fails(
        tmp_path,
        _join(lines),
        jobs,
        f"{DEVICE} seq 20: seal by key {vector['key_id']} does not verify",
    )


def test_a_seal_by_an_unregistered_key_fails(tmp_path: Path) -> None:
    """A seal that verifies under a key the registry never registered fails."""
    lines = _lines(sealed_source().bundle_bytes())
    other = Ed25519PrivateKey.generate()
    seq20 = json.loads(lines[_event_position(lines, DEVICE, 20)])["hash"]
    _replace_seal(
        lines,
        20,
        {
            "seq": 20,
            "key_id": "0011223344556677",
            "sig": b64url(other.sign(seal_message(DEVICE, 20, seq20))),
        },
    )
    _fails(
        tmp_path,
        _join(lines),
        1,
        f"{DEVICE} seq 20: seal by key 0011223344556677, which the registry does not register",
    )


def test_a_seal_by_a_key_revoked_before_the_event_fails(tmp_path: Path, jobs: int) -> None:
    """The key was revoked in the log before the device's events: its seals fail."""
    source = sealed_source(revoked=True)
    revoked_at = source.index_of[f"registry:{DEVICE}", 3]
    sealed_at = source.index_of[DEVICE, 10]
    _fails(
        tmp_path,
        source.bundle_bytes(),
        jobs,
        f"{DEVICE} seq 10: seal by key c237fe2fd2925b9b, revoked before this event "
        f"(log index {revoked_at} < {sealed_at})",
    )


def test_a_bad_inclusion_proof_fails(tmp_path: Path, jobs: int) -> None:
    """One hash of seq 5's audit path replaced: its inclusion no longer verifies."""
    lines = _lines(sealed_source(others=[stream_vector("HP-000012")]).bundle_bytes())
    position = _event_position(lines, DEVICE, 5)
    proof = json.loads(lines[position])["proof"]
    lines[position] = lines[position].replace(proof.encode(), ("07" * 32 + proof[64:]).encode(), 1)
    _fails(
        tmp_path,
        _join(lines),
        jobs,
        f"{DEVICE} seq 5: inclusion proof does not lead to the checkpoint's root",
    )


def test_a_checkpoint_signed_by_another_key_fails(tmp_path: Path) -> None:
    """A checkpoint signed by another key fails against the bundle's verifier key,
    and a bundle that swaps in the other key fails against the key the auditor pinned."""
    source = sealed_source()
    intruder = LogSigner()
    _fails(
        tmp_path,
        source.bundle_bytes(checkpoint=intruder.checkpoint(source.log)),
        1,
        "checkpoint: no signature by the verifier key coreline/log/v1",
    )
    swapped = BundleSource(streams=source.streams, signer=intruder).bundle_bytes()
    assert _verify(tmp_path, swapped)  # consistent with itself...
    path = tmp_path / "swapped.jsonl"
    path.write_bytes(swapped)
    from coreline_verify import parse_verifier_key  # noqa: PLC0415 - the pinned key

    with pytest.raises(CheckFailed, match="no signature by the verifier key"):
        verify_file(path, key=parse_verifier_key(source.signer.verifier_key))


def _fork(source: BundleSource) -> BundleSource:
    """The same streams with seq 3 of the device changed and relinked, signed by the
    platform key: a split view of the log."""
    registry_id, registry, _ = source.streams[0]
    stream_id, events, seals = source.streams[1]

    def other_area(event: dict[str, Any]) -> None:
        event["data"]["area_cm2"] = 12.5

    return BundleSource(
        streams=[(registry_id, registry, []), (stream_id, _relinked(events, 3, other_area), seals)],
        signer=source.signer,
    )


def test_a_witnessed_checkpoint_inconsistent_with_the_bundles_fails(tmp_path: Path) -> None:
    """A checkpoint an auditor kept from a forked log (same size or smaller) is not
    consistent with the bundle's checkpoint; one from the same log is."""
    source = sealed_source()
    fork = _fork(source)
    kept = tmp_path / "kept.txt"
    kept.write_text(source.signer.checkpoint(source.log, 20))
    forked_same_size = fork.signer.checkpoint(fork.log)
    forked_smaller = fork.signer.checkpoint(fork.log, 20)
    data = source.bundle_bytes(witnesses=[20])
    assert _verify(tmp_path, data, witnesses=[Witness("kept", kept.read_text())])
    _fails(
        tmp_path,
        data,
        1,
        "witness forked: another root for size 39 (a split view of the log)",
        witnesses=[Witness("forked", forked_same_size)],
    )
    _fails(
        tmp_path,
        data,
        1,
        "witness forked: the bundle holds no consistency proof from size 20 with this root "
        "(inconsistent with the bundle's checkpoint)",
        witnesses=[Witness("forked", forked_smaller)],
    )


def test_a_bundle_witness_with_a_proof_from_another_log_fails(tmp_path: Path) -> None:
    """A witnessed checkpoint of a forked log, carried with a consistency proof, fails."""
    source = sealed_source()
    fork = _fork(source)
    header, *rest = _lines(source.bundle_bytes())
    record = json.loads(header)
    record["witnesses"] = [
        {
            "checkpoint": fork.signer.checkpoint(fork.log, 20),
            "consistency_proof": b"".join(source.log.consistency_proof(20)).hex(),
        }
    ]
    _fails(
        tmp_path,
        _join([json.dumps(record).encode(), *rest]),
        1,
        "bundle witness 1 (size 20): the consistency proof does not lead from size 20 to size 39",
    )


def test_a_truncated_bundle_fails(tmp_path: Path, jobs: int) -> None:
    """A bundle cut before its end line fails as truncated."""
    lines = _lines(sealed_source().bundle_bytes())
    _fails(tmp_path, _join(lines[:-1]), jobs, "the bundle stops before its end line (truncated)")


def test_the_command_line_exits_0_1_and_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Exit 0 printing the facts, 1 naming the first failure, 2 for usage errors."""
    source = sealed_source()
    bundle = tmp_path / "bundle.jsonl"
    bundle.write_bytes(source.bundle_bytes(witnesses=[20]))
    kept = tmp_path / "kept.txt"
    kept.write_text(source.signer.checkpoint(source.log, 20))
    assert main([str(bundle), "--witness", str(kept), "--key", source.signer.verifier_key]) == 0
    out = capsys.readouterr().out
    assert _facts_line(sealed_vector()["expected"]) in out
    assert out.splitlines()[-1] == (
        "OK: 2 streams, 39 events, all in checkpoint coreline/log/v1 size 39; "
        "2 witnessed checkpoints consistent with it"
    )
    lines = _lines(bundle.read_bytes())
    position = _event_position(lines, DEVICE, 7)
    lines[position] = lines[position].replace(b'"actuations":', b'"actuations":1', 1)
    bundle.write_bytes(_join(lines))
    assert main([str(bundle)]) == 1
    assert capsys.readouterr().err == f"FAILED: {DEVICE} seq 7: hash does not match its bytes\n"
    with pytest.raises(SystemExit) as usage:
        main([str(tmp_path / "missing.jsonl")])
    assert usage.value.code == 2
    with pytest.raises(SystemExit) as usage:
        main([str(bundle), "--key", "not-a-key"])
    assert usage.value.code == 2


@pytest.mark.slow
def test_memory_stays_flat_however_many_events(tmp_path: Path) -> None:
    """Verifying four times the events takes no more memory: the bundle is streamed."""
    peaks = []
    for events in (3_000, 12_000):
        path = tmp_path / f"{events}.jsonl"
        build_bundle(path, events)
        tracemalloc.start()
        verdict = verify_file(path, jobs=1)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        assert verdict.events == events + 1
    assert peaks[1] < peaks[0] * 1.2
