"""The verifier's roads to the same verdicts: event lines of the documented shape are
read by position and any other shape as JSON; stored bytes are checked canonical on
the fast road or the definition's; seals are verified in worker processes or in
order; and whichever road a line takes, what passes and what fails is the same."""

import base64
import hashlib
import io
import itertools
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from coreline_verify import (
    BundleUnreadable,
    CheckFailed,
    InclusionChecker,
    NotCanonicalError,
    ProofError,
    parallel,
    read_canonical,
    seal_message,
    verify_file,
)
from coreline_verify.seals import DeviceKeys, SealError, VerifiedSeal, signature_verifies
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bench.evidence_bundle import DEVICE as BENCH_DEVICE
from bench.evidence_bundle import build_bundle
from schemas import canonical_body, event_hash
from services.evidence import LogEvidence, LoggedEvent, Scope, StreamEvidence, write_bundle
from tests.support.evidence_log import (
    ORIGIN,
    BundleSource,
    LogSigner,
    MerkleLog,
    b64url,
    chain,
    key_registered,
    sealed_source,
    stream_vector,
)

DEVICE = "HP-000099"
SEALED = "HP-000014"


@pytest.fixture(params=[1, 2], ids=["in-process", "workers"])
def jobs(request: pytest.FixtureRequest) -> int:
    jobs: int = request.param
    return jobs


def _verify(tmp_path: Path, data: bytes, jobs: int) -> list[str]:
    path = tmp_path / "bundle.jsonl"
    path.write_bytes(data)
    printed: list[str] = []
    verify_file(path, jobs=jobs, emit=printed.append)
    return printed


def _failure(tmp_path: Path, data: bytes, jobs: int) -> str:
    with pytest.raises(CheckFailed) as failure:
        _verify(tmp_path, data, jobs)
    return str(failure.value)


def _rewrite_event_lines(data: bytes, rewrite: Callable[[dict[str, Any], bytes], bytes]) -> bytes:
    """Each event line replaced by ``rewrite(its members, its stored bytes)``."""
    out = []
    for line in data.split(b"\n")[:-1]:
        written = line
        if line.startswith(b'{"log_index":'):
            body = line[line.index(b',"event":') + len(b',"event":') : -1]
            written = rewrite(json.loads(line), body)
        out.append(written + b"\n")
    return b"".join(out)


def _reordered(members: dict[str, Any], body: bytes) -> bytes:
    # log_index first still: a line is known for an event's by how it starts.
    head = json.dumps(
        {"log_index": members["log_index"], "proof": members["proof"], "hash": members["hash"]},
        separators=(",", ":"),
    )
    return head[:-1].encode() + b',"event":' + body + b"}"


def _documented(members: dict[str, Any], body: bytes) -> bytes:
    return (
        (
            f'{{"log_index":{members["log_index"]},"hash":"{members["hash"]}",'
            f'"proof":"{members["proof"]}","event":'
        ).encode()
        + body
        + b"}"
    )


def _escaped_proof(members: dict[str, Any], body: bytes) -> bytes:
    proof = members["proof"]
    escaped = f"\\u{ord(proof[0]):04x}{proof[1:]}" if proof else proof
    return (
        (
            f'{{"log_index":{members["log_index"]},"hash":"{members["hash"]}",'
            f'"proof":"{escaped}","event":'
        ).encode()
        + body
        + b"}"
    )


def _spaced(members: dict[str, Any], body: bytes) -> bytes:
    return (
        (
            f'{{"log_index":{members["log_index"]}, "hash": "{members["hash"]}", '
            f'"proof": "{members["proof"]}","event":'
        ).encode()
        + body
        + b"}"
    )


@pytest.mark.parametrize("rewrite", [_reordered, _escaped_proof, _spaced])
def test_event_lines_of_another_shape_verify_as_the_json_they_are(
    tmp_path: Path, jobs: int, rewrite: Callable[[dict[str, Any], bytes], bytes]
) -> None:
    """Hash and proof in the other order, a proof written with a JSON escape, or
    spaces between members: the general road reads the line as JSON, and the bundle
    verifies with the same report as when written in the documented shape."""
    data = sealed_source(others=[stream_vector("HP-000011")]).bundle_bytes()
    rewritten = _rewrite_event_lines(data, rewrite)
    assert rewritten != data
    assert _verify(tmp_path, rewritten, jobs) == _verify(tmp_path, data, jobs)


def _altered_at_seq_5(change: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
    def alter(members: dict[str, Any]) -> None:
        if members["event"]["seq"] == 5 and members["event"]["device_id"] == SEALED:
            change(members)

    return alter


def _wrong_hash(members: dict[str, Any]) -> None:
    members["hash"] = "ab" * 32


def _wrong_proof(members: dict[str, Any]) -> None:
    members["proof"] = "cd" * 32 + members["proof"][64:]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (_wrong_hash, f"{SEALED} seq 5: hash does not match its bytes"),
        (_wrong_proof, f"{SEALED} seq 5: inclusion proof does not lead to the checkpoint's root"),
    ],
    ids=["hash", "proof"],
)
@pytest.mark.parametrize("shape", [_documented, _reordered], ids=["documented", "reordered"])
def test_a_wrong_hash_or_proof_fails_the_same_in_any_shape(
    tmp_path: Path,
    jobs: int,
    change: Callable[[dict[str, Any]], None],
    message: str,
    shape: Callable[[dict[str, Any], bytes], bytes],
) -> None:
    """A hash or an inclusion proof altered fails with the same message in a line of
    the documented shape (read by position) as in one of another (read as JSON)."""
    alter = _altered_at_seq_5(change)

    def rewrite(members: dict[str, Any], body: bytes) -> bytes:
        alter(members)
        return shape(members, body)

    data = _rewrite_event_lines(sealed_source().bundle_bytes(), rewrite)
    assert _failure(tmp_path, data, jobs) == message


def _stream_of_bodies(bodies: list[bytes]) -> bytes:
    """An unsigned device stream of these stored bytes, hashed and logged as they are."""
    hashes = [hashlib.sha256(body).hexdigest() for body in bodies]
    log = MerkleLog(bytes.fromhex(hex_hash) for hex_hash in hashes)
    signer = LogSigner()
    out = io.BytesIO()
    events = [
        LoggedEvent(body, hex_hash, index, log.inclusion_proof(index))
        for index, (body, hex_hash) in enumerate(zip(bodies, hashes, strict=True))
    ]
    write_bundle(
        out,
        scope=Scope(kind="device", device_id=DEVICE),
        log=LogEvidence(ORIGIN, signer.verifier_key, signer.checkpoint(log)),
        streams=[StreamEvidence(DEVICE, 1, len(bodies), events)],
    )
    return out.getvalue()


def _events(operator: str = "op-7f3a") -> list[dict[str, Any]]:
    session = "a6ec39c1-c155-41b1-b3dc-a50a9daa37e5"
    return chain(
        DEVICE,
        [
            ("cartridge.installed", {"cartridge_id": "CT-1", "core_diameter_mm": 0.5}),
            ("session.started", {"session_id": session, "area_cm2": 12.5,
                                 "operator_ref": operator, "cartridge_id": "CT-1"}),
            ("cores.punched", {"session_id": session, "cartridge_id": "CT-1", "cores": 40,
                               "depth_mm": 1.5}),
            ("session.ended", {"session_id": session, "cores_total": 40}),
        ],
    )  # fmt: skip


def _reversed_members(body: bytes) -> bytes:
    value = json.loads(body)
    return json.dumps(dict(reversed(value.items())), separators=(",", ":")).encode()


def _escaped_last_letter(body: bytes) -> bytes:
    operator = json.loads(body)["data"]["operator_ref"]
    written = json.dumps(operator, ensure_ascii=False).encode()
    escaped = f'"{operator[:-1]}\\u{ord(operator[-1]):04x}"'.encode()
    return body.replace(written, escaped)


_NOT_CANONICAL: list[tuple[str, Callable[[bytes], bytes]]] = [
    ("a space", lambda body: body.replace(b'":', b'": ', 1)),
    ("members out of order", _reversed_members),
    ("an integral number as a float", lambda body: body.replace(b'"seq":2', b'"seq":2.0')),
    ("a number with an exponent", lambda body: body.replace(b'"seq":2', b'"seq":2e0')),
    ("an escape JCS does not write", _escaped_last_letter),
    ("a duplicate member", lambda body: b'{"data":null,' + body[1:]),
]


@pytest.mark.parametrize("operator", ["op-7f3a", "José"], ids=["ascii", "utf-8"])
@pytest.mark.parametrize(("name", "alter"), _NOT_CANONICAL, ids=[n for n, _ in _NOT_CANONICAL])
def test_stored_bytes_not_in_canonical_form_fail_though_hashed_and_logged(
    tmp_path: Path, jobs: int, operator: str, name: str, alter: Callable[[bytes], bytes]
) -> None:
    """Bytes that hash to their stated hash and are in the log, but are not their
    value's RFC 8785 form (spacing, order, number forms, escapes, duplicates), fail
    as not canonical, on the fast road (ASCII) and the definition's (UTF-8) alike."""
    bodies = [canonical_body(event) for event in _events(operator)]
    assert bodies[1].isascii() == operator.isascii()
    assert _verify(tmp_path, _stream_of_bodies(bodies), jobs)  # verifies untouched
    altered = alter(bodies[1])
    assert altered != bodies[1]
    assert json.loads(altered)["data"] == json.loads(bodies[1])["data"] or name.startswith("a dup")
    bodies[1] = altered
    assert _failure(tmp_path, _stream_of_bodies(bodies), jobs).startswith(
        f"{DEVICE} seq 2: its bytes are not canonical JSON (RFC 8785)"
    )


def test_canonical_non_ascii_bytes_verify_on_the_definitions_road(
    tmp_path: Path, jobs: int
) -> None:
    """An event holding non-ASCII text (written literally, as JCS does) verifies."""
    bodies = [canonical_body(event) for event in _events(operator="José Müller")]
    assert not bodies[1].isascii()
    printed = _verify(tmp_path, _stream_of_bodies(bodies), jobs)
    assert printed[-1].startswith(f"{DEVICE} seq 1–4: 4 events, bytes, hashes, links")


def test_a_run_after_an_event_whose_seq_is_not_an_integer_fails_by_name(
    tmp_path: Path, jobs: int
) -> None:
    """An event whose seq is text, hashed and logged as such, is named; the events
    after it (which a worker would gather into a run) change nothing."""
    events = _events()
    events[1]["seq"] = "2"
    for before, event in itertools.pairwise(events):
        event["prev_hash"] = before["hash"]
        event["hash"] = event_hash({k: v for k, v in event.items() if k != "hash"})
    data = BundleSource(streams=[(DEVICE, events, [])]).bundle_bytes()
    assert _failure(tmp_path, data, jobs) == (
        f"{DEVICE} seq 2: the event says seq 2 (an event is missing or moved)"
    )


def _checkpoint_tree(path: Path) -> tuple[int, bytes]:
    header = json.loads(path.read_bytes().split(b"\n", 1)[0])
    text = header["log"]["checkpoint"].split("\n")
    return int(text[1]), base64.b64decode(text[2])


def _registered_keys(path: Path) -> dict[str, dict[str, bytes]]:
    keys = DeviceKeys()
    with path.open("rb") as lines:
        for line in lines:
            if b'"device.key_registered"' in line:
                keys.register(json.loads(line)["event"]["data"])
    return {BENCH_DEVICE: dict(keys.raw)}


def test_seals_are_verified_in_the_workers_once_their_keys_are_known(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over a bundle of many blocks, the workers verify the seals of the blocks
    handed out once the registry's key is read; the bundle verifies with the same
    report as in one process; and a forged seal in a late block fails by name."""
    monkeypatch.setattr(parallel, "_BLOCK_BYTES", 1 << 16)
    path = tmp_path / "bundle.jsonl"
    build_bundle(path, 3_000)
    size, root = _checkpoint_tree(path)
    start = len(path.read_bytes().split(b"\n", 1)[0]) + 1
    keys = _registered_keys(path)
    with parallel.prepared_in_workers(
        path, start, InclusionChecker(size, root), 2, lambda: keys
    ) as items:
        kinds = [type(item).__name__ for item in items]
    assert kinds.count("VerifiedSeal") == 30  # a seal every 100 events
    assert "BundleUnreadable" not in kinds
    in_order: list[str] = []
    verify_file(path, jobs=1, emit=in_order.append)
    in_workers: list[str] = []
    verify_file(path, jobs=2, emit=in_workers.append)
    assert in_workers == in_order

    lines = path.read_bytes().split(b"\n")
    last_seal = max(i for i, line in enumerate(lines) if line.startswith(b'{"seal":'))
    seal = json.loads(lines[last_seal])["seal"]
    sealed_hash = json.loads(lines[last_seal - 1])["hash"]
    forged = Ed25519PrivateKey.generate().sign(seal_message(BENCH_DEVICE, seal["seq"], sealed_hash))
    lines[last_seal] = json.dumps({"seal": {**seal, "sig": b64url(forged)}}).encode()
    path.write_bytes(b"\n".join(lines))
    message = f"{BENCH_DEVICE} seq {seal['seq']}: seal by key {seal['key_id']} does not verify"
    for jobs in (1, 2):
        with pytest.raises(CheckFailed, match=re.escape(message)):
            verify_file(path, jobs=jobs)


def test_a_seal_verified_elsewhere_counts_only_for_its_device_hash_and_key() -> None:
    """A seal a worker verified is taken as verified only for the same seal, device,
    event hash and registered key; for any other it is verified again, and fails."""
    device_key = Ed25519PrivateKey.generate()
    raw = device_key.public_key().public_bytes_raw()
    key_id = hashlib.sha256(raw).digest()[:8].hex()
    keys = DeviceKeys()
    keys.register(key_registered(key_id, b64url(raw))[1])
    event = "ab" * 32
    seal = {
        "seq": 7,
        "key_id": key_id,
        "sig": b64url(device_key.sign(seal_message(DEVICE, 7, event))),
    }
    assert signature_verifies(raw, seal, DEVICE, event)
    assert keys.check(seal, DEVICE, event, 10, VerifiedSeal(seal, DEVICE, event, raw)) == key_id

    forged = {**seal, "sig": b64url(Ed25519PrivateKey.generate().sign(b"x"))}
    other_key = Ed25519PrivateKey.generate().public_key().public_bytes_raw()
    for claimed in [
        VerifiedSeal(forged, "HP-000098", event, raw),
        VerifiedSeal(forged, DEVICE, "cd" * 32, raw),
        VerifiedSeal(forged, DEVICE, event, other_key),
        VerifiedSeal({**forged}, DEVICE, event, raw),
    ]:
        with pytest.raises(SealError, match="does not verify"):
            keys.check(forged, DEVICE, event, 10, claimed)
    assert not signature_verifies(raw, forged, DEVICE, event)


def test_a_proof_is_the_same_as_text_or_bytes() -> None:
    """The inclusion checker takes a proof as ``str`` or ``bytes`` to the same
    verdicts, and refuses text that is not ASCII hex."""
    log = MerkleLog(hashlib.sha256(str(n).encode()).digest() for n in range(9))
    root = log.root()
    for index in range(9):
        leaf = hashlib.sha256(str(index).encode()).digest()
        proof = b"".join(log.inclusion_proof(index)).hex()
        InclusionChecker(9, root).check(leaf, index, proof)
        InclusionChecker(9, root).check(leaf, index, proof.encode())
        for wrong in (proof.upper()[:-1] + "é", proof[:-2] + "zz"):
            with pytest.raises(ProofError):
                InclusionChecker(9, root).check(leaf, index, wrong)


def test_numbers_read_after_many_others_are_still_checked() -> None:
    """Past the count of number texts kept, a non-canonical number is still refused
    and a canonical one still read, on whichever road it takes."""
    for number in range(10_000):
        assert read_canonical(b'{"n":%d,"x":%d.5}' % (number, number)) == {
            "n": number,
            "x": number + 0.5,
        }
    for text in (b'{"n":1.0}', b'{"n":9007199254740993}', b'{"n":0.50}', b'{"n":1E2}'):
        with pytest.raises(NotCanonicalError):
            read_canonical(text)
    assert read_canonical(b'{"n":1e-7}') == {"n": 1e-7}
    assert read_canonical(b'{"n":9007199254740991}') == {"n": 9007199254740991}


def test_an_unreadable_line_is_named_by_its_number(tmp_path: Path, jobs: int) -> None:
    """A line that is not JSON is named by its line number, events gathered into
    runs before it counted one by one."""
    lines = sealed_source().bundle_bytes().split(b"\n")
    seal_20 = next(
        number
        for number, line in enumerate(lines, 1)
        if line.startswith(b'{"seal":') and json.loads(line)["seal"]["seq"] == 20
    )
    lines[seal_20 - 1] = b'{"seal":'
    path = tmp_path / "bundle.jsonl"
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(BundleUnreadable, match=f"^line {seal_20}: a line is not JSON"):
        verify_file(path, jobs=jobs)
