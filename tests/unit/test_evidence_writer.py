"""The platform's evidence bundle writer: what it writes verifies with the
standalone verifier, it streams, and it refuses what a bundle cannot hold."""

import ast
import io
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from coreline_verify import verify_lines

from schemas import canonical_body
from services.evidence import (
    EvidenceError,
    LogEvidence,
    LoggedEvent,
    Scope,
    StreamEvidence,
    StreamSeal,
    write_bundle,
)
from tests.support.evidence_log import (
    ORIGIN,
    BundleSource,
    sealed_source,
    stream_vector,
    vector_events,
)

VERIFIER = Path(__file__).resolve().parents[2] / "verifier"


def _source() -> BundleSource:
    return sealed_source(others=[stream_vector("HP-000013")])


def test_what_the_writer_writes_verifies() -> None:
    """A bundle of three streams (one sealed, with its registry) verifies, scope and all."""
    source = _source()
    out = io.BytesIO()
    source.write(
        out,
        witnesses=[10],
        scope=Scope(kind="session", session_id="a6ec39c1-c155-41b1-b3dc-a50a9daa37e5"),
    )
    verdict = verify_lines(io.BytesIO(out.getvalue()))
    assert (verdict.streams, verdict.events, verdict.witnessed) == (3, 31 + 2 + 37, 1)
    assert (
        b'"scope":{"kind":"session","session_id":"a6ec39c1-c155-41b1-b3dc-a50a9daa37e5"}'
        in out.getvalue()
    )


def test_events_are_written_as_they_come() -> None:
    """Each event is on the file before the next is asked for: memory stays flat."""
    source = _source()
    out = io.BytesIO()
    device, events, _ = source.streams[0]
    written: list[int] = []

    def lazily() -> Iterator[LoggedEvent]:
        for event in events:
            written.append(out.tell())
            index = source.index_of[device, event["seq"]]
            yield LoggedEvent(
                canonical_body(event), event["hash"], index, source.log.inclusion_proof(index)
            )

    write_bundle(
        out,
        scope=Scope(kind="device", device_id=device),
        log=LogEvidence(ORIGIN, source.signer.verifier_key, source.signer.checkpoint(source.log)),
        streams=[StreamEvidence(device, 1, len(events), lazily())],
    )
    assert written == sorted(set(written))  # the file grew between every two events


def _write(stream: StreamEvidence) -> None:
    source = _source()
    write_bundle(
        io.BytesIO(),
        scope=Scope(
            kind="period", from_time="2026-11-01T00:00:00Z", to_time="2026-12-01T00:00:00Z"
        ),
        log=LogEvidence(ORIGIN, source.signer.verifier_key, source.signer.checkpoint(source.log)),
        streams=[stream],
    )


def _events(count: int) -> list[LoggedEvent]:
    events = vector_events(stream_vector("HP-000011"))[:count]
    return [
        LoggedEvent(canonical_body(e), e["hash"], i, [b"\x00" * 32]) for i, e in enumerate(events)
    ]


@pytest.mark.parametrize(
    ("stream", "message"),
    [
        (
            StreamEvidence("HP-000011", 1, 3, _events(2)),
            "HP-000011: states seq 1–3, holds events through 2",
        ),
        (
            StreamEvidence(
                "HP-000011", 1, 3, _events(3), [StreamSeal(2, "k", "s"), StreamSeal(1, "k", "s")]
            ),
            "HP-000011: seal for seq 1 is out of order",
        ),
        (
            StreamEvidence("HP-000011", 1, 2, _events(2), [StreamSeal(5, "k", "s")]),
            "HP-000011: a seal is for an event the stream lacks",
        ),
        (
            StreamEvidence("HP-000011", 1, 1, [LoggedEvent(b'{\n"a":1}', "0" * 64, 0, [])]),
            "HP-000011 seq 1: stored bytes hold a newline",
        ),
        (
            StreamEvidence("HP-000011", 1, 1, [LoggedEvent(b"{}", "0" * 64, 0, [b"short"])]),
            "proof hashes are 32 bytes",
        ),
    ],
)
def test_the_writer_refuses_what_a_bundle_cannot_hold(stream: StreamEvidence, message: str) -> None:
    """A stream holding other than it states, seals out of order or without their
    event, bytes with a newline, and proof hashes of the wrong size are refused."""
    with pytest.raises(EvidenceError) as refusal:
        _write(stream)
    assert str(refusal.value) == message


def test_the_verifier_depends_on_cryptography_alone() -> None:
    """coreline_verify imports the standard library, cryptography and itself only,
    and declares cryptography as its one dependency."""
    allowed = set(sys.stdlib_module_names) | {"cryptography", "coreline_verify"}
    imported: set[str] = set()
    for path in (VERIFIER / "coreline_verify").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                imported.add(node.module.split(".")[0])
    assert imported - allowed == set()
    project = tomllib.loads((VERIFIER / "pyproject.toml").read_text())["project"]
    assert [dependency.split(">")[0] for dependency in project["dependencies"]] == ["cryptography"]
