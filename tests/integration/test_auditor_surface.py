"""What an auditor reads through the API and the dashboard is enough to recompute every
hash: events are served as stored, sessions carry their place in the chain and the
hashes at its ends, the CSV carries what each row is checked against, and auditors
read devices and their history within the same custody as the clinic they audit.

The world is the independent implementation's protocol vectors, stored as the
gateway stores them and folded by the real projector, on SQLite and PostgreSQL."""

import csv
import hashlib
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import rfc8785
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from schemas import decode_event_batch
from services.api import Role, commands, create_token
from services.eventstore import open_event_store
from services.merkle_log import LogKeeper, MerkleLog, create_key_file, load_signer
from services.projections.read_store import ReadModelStore
from services.projector import Projector
from tests.support.accounts import create_accounts, csrf_token, sign_in
from tests.support.api_client import api_client, bearer
from tests.support.vectors import batch_payload, load_stream

CLINIC_A, CLINIC_B = "clinic-alpha", "clinic-bravo"
OWNERS = {"HP-000011": CLINIC_A, "HP-000012": CLINIC_B, "HP-000013": None, "HP-000014": CLINIC_A}
HASH_MEMBER = re.compile(rb',"hash":"([0-9a-f]{64})"\}\n$')


@dataclass(frozen=True)
class Vectors:
    events: dict[str, list[dict[str, Any]]]
    """Each device's stream as the independent implementation wrote it."""
    expected: dict[str, dict[str, Any]]


@dataclass(frozen=True)
class Platform:
    url: str
    client: TestClient
    tokens: dict[str, str]
    vectors: Vectors

    def get(self, path: str, as_: str = "auditor") -> Any:
        """The response of a GET by the named token's bearer, which must succeed."""
        response = self.client.get(path, headers=bearer(self.tokens[as_]))
        assert response.status_code == 200, response.text
        return response

    def session_id(self, device_id: str) -> str:
        found: str = self.vectors.expected[device_id]["session_id"]
        return found

    def seq_of(self, device_id: str, event_type: str) -> int:
        events = self.vectors.events[device_id]
        return int(next(event["seq"] for event in events if event["type"] == event_type))

    def hash_at(self, device_id: str, seq: int) -> str:
        found: str = self.vectors.events[device_id][seq - 1]["hash"]
        return found


def _load_vectors(vectors_dir: Path) -> Vectors:
    events, expected = {}, {}
    for device_id in ("HP-000011", "HP-000012", "HP-000013"):
        stream = load_stream(vectors_dir, device_id)
        events[device_id], expected[device_id] = stream["events"], stream["expected"]
    sealed = json.loads((vectors_dir / "HP-000014.sealed.json").read_text())
    events["HP-000014"] = [event for batch in sealed["batches"] for event in batch["events"]]
    expected["HP-000014"] = sealed["expected"]
    return Vectors(events, expected)


def _store_world(url: str, vectors: Vectors) -> dict[str, str]:
    """Devices registered and assigned first, so their sessions are their clinics';
    events appended as the gateway appends them; everything folded; a token per role."""
    store = open_event_store(url)
    read_models = ReadModelStore(url)
    try:
        for device_id, clinic in OWNERS.items():
            if clinic is not None:
                commands.register_device(store, device_id, "CX-2", "fleet-ops")
                commands.assign_device(store, device_id, clinic, "fleet-ops")
            events = vectors.events[device_id]
            decoded = decode_event_batch(device_id, batch_payload(device_id, events))
            assert decoded.rejections == ()
            assert store.append(decoded.events).appended == len(events)
        projector = Projector(store, read_models)
        while projector.step():
            pass
        return {
            name: create_token(read_models.engine, role, clinic, name)[1]
            for name, role, clinic in (
                ("auditor", Role.AUDITOR, None),
                ("auditor_a", Role.AUDITOR, CLINIC_A),
                ("clinic_a", Role.CLINIC, CLINIC_A),
            )
        }
    finally:
        store.close()
        read_models.close()


@pytest.fixture(params=["sqlite", "postgres"])
def platform(request: pytest.FixtureRequest, vectors_dir: Path) -> Iterator[Platform]:
    """The vectors' four devices stored, folded and served, on each database."""
    url: str = request.getfixturevalue(f"{request.param}_url")
    vectors = _load_vectors(vectors_dir)
    tokens = _store_world(url, vectors)
    with api_client(url) as client:
        yield Platform(url, client, tokens, vectors)


@pytest.fixture
def engine(platform: Platform) -> Iterator[Engine]:
    read_models = ReadModelStore(platform.url)
    yield read_models.engine
    read_models.close()


def _recomputed(event: dict[str, Any]) -> str:
    unhashed = {name: value for name, value in event.items() if name != "hash"}
    return hashlib.sha256(rfc8785.dumps(unhashed)).hexdigest()


def _without_seals(engine: Engine) -> None:
    """A store from before device seals: no seals table."""
    cascade = " CASCADE" if engine.dialect.name == "postgresql" else ""
    with engine.begin() as connection:
        connection.execute(text(f"DROP TABLE IF EXISTS seals{cascade}"))


def _seal(engine: Engine, device_id: str, seq: int) -> None:
    """A stored seal over ``device_id``'s stream through ``seq`` (DESIGN §4.1); the
    table as the seals migration makes it, made here when this store lacks it."""
    with engine.begin() as connection:
        connection.execute(
            text(
                "CREATE TABLE IF NOT EXISTS seals (stream_id text NOT NULL, seq bigint NOT NULL,"
                " key_id text NOT NULL, sig text NOT NULL, stored_at timestamp with time zone"
                " NOT NULL, PRIMARY KEY (stream_id, seq))"
            )
        )
        connection.execute(
            text(
                "INSERT INTO seals (stream_id, seq, key_id, sig, stored_at)"
                " VALUES (:stream, :seq, 'c237fe2fd2925b9b', 'sig', CURRENT_TIMESTAMP)"
            ),
            {"stream": device_id, "seq": seq},
        )


def test_every_event_of_a_device_history_hashes_to_its_hash(platform: Platform) -> None:
    """Every event the device history returns carries the stored event verbatim: the
    SHA-256 of its RFC 8785 form without ``hash`` is its hash, and it is the event the
    independent implementation wrote."""
    for device_id, written in platform.vectors.events.items():
        page = platform.get(f"/api/v1/devices/{device_id}/events?limit=500").json()
        items = page["items"]
        assert [item["seq"] for item in items] == [event["seq"] for event in written]
        for item, original in zip(items, written, strict=True):
            assert _recomputed(item["event"]) == item["hash"] == item["event"]["hash"]
            assert item["event"] == original


def test_the_ndjson_history_is_the_stored_bytes_page_by_page(platform: Platform) -> None:
    """``format=ndjson`` serves one stored event per line, the hashed bytes with ``hash``
    appended: cut it back out and SHA-256 of the bytes left is the hash.  The ``Link``
    header leads through every page."""
    written = platform.vectors.events["HP-000011"]
    path: str | None = "/api/v1/devices/HP-000011/events?format=ndjson&limit=10"
    lines: list[bytes] = []
    while path is not None:
        response = platform.get(path)
        assert response.headers["content-type"] == "application/x-ndjson"
        lines += response.content.splitlines(keepends=True)
        following = re.fullmatch(r'<\?(.+)>; rel="next"', response.headers.get("link", ""))
        path = None if following is None else f"/api/v1/devices/HP-000011/events?{following[1]}"
    assert len(lines) == len(written)
    for line, original in zip(lines, written, strict=True):
        found = HASH_MEMBER.search(line)
        assert found is not None, line
        body = line[: found.start()] + b"}"
        assert hashlib.sha256(body).hexdigest() == found[1].decode() == original["hash"]
        assert json.loads(line) == original


def test_a_session_detail_serves_its_place_in_the_chain(platform: Platform) -> None:
    """A session's detail names its first and last seq and their stored hashes, the
    core diameter of its cartridge, and events whose hashes recompute from what is
    served."""
    for device_id in platform.vectors.events:
        session_id = platform.session_id(device_id)
        detail = platform.get(f"/api/v1/sessions/{session_id}").json()
        first = platform.seq_of(device_id, "session.started")
        last = platform.seq_of(device_id, "session.ended")
        assert (detail["first_seq"], detail["last_seq"]) == (first, last)
        assert detail["first_hash"] == platform.hash_at(device_id, first)
        assert detail["last_hash"] == platform.hash_at(device_id, last)
        assert detail["chain_status"] == "verified"
        [cartridge] = detail["cartridges"]
        installed = next(
            event["data"]
            for event in platform.vectors.events[device_id]
            if event["type"] == "cartridge.installed"
        )
        assert cartridge["cartridge_id"] == installed["cartridge_id"]
        assert cartridge["core_diameter_mm"] == installed["core_diameter_mm"]
        assert detail["events"], device_id
        for event in detail["events"]:
            assert _recomputed(event["event"]) == event["hash"]
            assert event["event"] == platform.vectors.events[device_id][event["seq"] - 1]


def test_seal_status_follows_the_stored_seals(platform: Platform, engine: Engine) -> None:
    """Without a seals table a session's seal status is null; with one, a session is
    ``signed`` when a stored seal reaches its end, else ``unsigned``, in the detail and
    the CSV alike."""
    _without_seals(engine)
    sealed, short, unsealed = "HP-000014", "HP-000011", "HP-000012"
    detail = platform.get(f"/api/v1/sessions/{platform.session_id(sealed)}").json()
    assert detail["seal_status"] is None
    rows = _csv_rows(platform.get("/api/v1/audit/sessions.csv").text)
    assert {row["seal_status"] for row in rows} == {""}

    _seal(engine, sealed, platform.vectors.expected[sealed]["last_seq"])
    _seal(engine, short, platform.seq_of(short, "session.ended") - 1)
    status = {
        device_id: platform.get(f"/api/v1/sessions/{platform.session_id(device_id)}").json()[
            "seal_status"
        ]
        for device_id in (sealed, short, unsealed)
    }
    assert status == {sealed: "signed", short: "unsigned", unsealed: "unsigned"}
    exported = {
        row["device_id"]: row["seal_status"]
        for row in _csv_rows(platform.get("/api/v1/audit/sessions.csv").text)
    }
    assert {device_id: exported[device_id] for device_id in status} == status


def _csv_rows(body: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(body)))


def test_the_csv_carries_the_evidence_in_the_sessions_order(platform: Platform) -> None:
    """The CSV's rows come in the sessions list's order (newest first), coverage rounded
    to two decimals, with each session's cartridge, core diameter, seq range, last
    hash and chain status; the dashboard's export is the same file."""
    response = platform.get("/api/v1/audit/sessions.csv")
    header = response.text.split("\r\n", 1)[0].split(",")
    assert header[-7:] == [
        "chain_status", "cartridge_ids", "core_diameter_mm", "first_seq", "last_seq",
        "last_hash", "seal_status",
    ]  # fmt: skip
    rows = _csv_rows(response.text)
    listed = platform.get("/api/v1/sessions?limit=500").json()["items"]
    assert [row["session_id"] for row in rows] == [item["session_id"] for item in listed]
    assert len(rows) == len(platform.vectors.events)
    for row in rows:
        device_id = row["device_id"]
        expected = platform.vectors.expected[device_id]
        assert re.fullmatch(r"\d+\.\d\d", row["coverage_pct"]), row
        assert row["coverage_pct"] == f"{expected['coverage_pct']:.2f}"
        assert row["cartridge_ids"] == expected["cartridge_id"]
        installed = next(
            e for e in platform.vectors.events[device_id] if e["type"] == "cartridge.installed"
        )
        assert float(row["core_diameter_mm"]) == installed["data"]["core_diameter_mm"]
        last = platform.seq_of(device_id, "session.ended")
        assert int(row["first_seq"]) == platform.seq_of(device_id, "session.started")
        assert int(row["last_seq"]) == last
        assert row["last_hash"] == platform.hash_at(device_id, last)
        assert row["chain_status"] == "verified"


def test_auditors_read_devices_in_the_clinics_custody(platform: Platform) -> None:
    """A fleet-wide auditor reads every device and its history; an auditor of one
    clinic reads that clinic's devices exactly as the clinic does, and another
    clinic's device is 404 to them."""
    for device_id in OWNERS:
        assert platform.get(f"/api/v1/devices/{device_id}").json()["device_id"] == device_id
    history = "/api/v1/devices/HP-000011/events?limit=500"
    assert platform.get(history, "auditor_a").json() == platform.get(history, "clinic_a").json()
    assert platform.get("/api/v1/devices/HP-000011", "auditor_a").json()["clinic_id"] == CLINIC_A
    listed = platform.get("/api/v1/devices", "auditor_a").json()["items"]
    assert {device["device_id"] for device in listed} == {"HP-000011", "HP-000014"}
    for path in ("/api/v1/devices/HP-000012", "/api/v1/devices/HP-000012/events"):
        refused = platform.client.get(path, headers=bearer(platform.tokens["auditor_a"]))
        assert refused.status_code == 404


def test_an_auditor_follows_a_session_to_its_device_and_reverifies_it(
    platform: Platform, engine: Engine
) -> None:
    """On the dashboard an auditor's session page shows the seq range, the hashes at
    both ends, the chain and seal status and a device link that opens; its re-verify
    form recomputes the chain from the stored bytes and shows the verdict, and is
    refused without the session's CSRF token."""
    _without_seals(engine)
    people = create_accounts(platform.url)
    client = platform.client
    sign_in(client, people["auditor_a"])
    device_id = "HP-000011"
    session_id = platform.session_id(device_id)
    first = platform.seq_of(device_id, "session.started")
    last = platform.seq_of(device_id, "session.ended")
    page = client.get(f"/sessions/{session_id}")
    assert page.status_code == 200
    for shown in (
        f'data-field="first_seq">{first}<',
        f'data-field="last_seq">{last}<',
        f'data-field="first_hash">{platform.hash_at(device_id, first)}<',
        f'data-field="last_hash">{platform.hash_at(device_id, last)}<',
        'data-field="chain_status">verified<',
        "not recorded: this platform keeps no device seals yet",
    ):
        assert shown in page.text
    assert 'data-testid="verification"' not in page.text
    assert f'href="/devices/{device_id}"' in page.text
    device_page = client.get(f"/devices/{device_id}")
    assert device_page.status_code == 200
    assert "<h2>Alerts</h2>" not in device_page.text  # auditors do not read alerts

    action = f"/sessions/{session_id}/verify"
    assert client.post(action, data={}).status_code == 403
    verified = client.post(action, data={"csrf_token": csrf_token(page.text)})
    assert verified.status_code == 200
    assert 'data-field="verified_status">verified<' in verified.text
    events = len(platform.vectors.events[device_id])
    assert f"{events} events of {device_id} checked" in verified.text
    foreign = f"/sessions/{platform.session_id('HP-000012')}/verify"
    assert client.post(foreign, data={"csrf_token": csrf_token(page.text)}).status_code == 404


def test_the_session_page_says_whether_a_signed_checkpoint_covers_it(
    platform: Platform, tmp_path: Path
) -> None:
    """The log status of a session's last event moves from not logged, to logged and
    awaiting a checkpoint, to covered by a signed checkpoint with its leaf named and a
    link to its inclusion proof."""
    people = create_accounts(platform.url)
    sign_in(platform.client, people["auditor_a"])
    device_id = "HP-000011"
    session_id = platform.session_id(device_id)
    last = platform.seq_of(device_id, "session.ended")

    def log_status() -> str:
        page = platform.client.get(f"/sessions/{session_id}")
        assert page.status_code == 200
        found = re.search(r'data-field="log_status">(.*?)</dd>', page.text, re.S)
        assert found is not None
        return found.group(1)

    assert "not yet logged" in log_status()
    key = tmp_path / "coreline-log.key"
    create_key_file(key, "coreline/log/v1")
    store, merkle_log = open_event_store(platform.url), MerkleLog.open(platform.url)
    try:
        keeper = LogKeeper(store, merkle_log, load_signer(key, "coreline/log/v1"))
        keeper.catch_up()
        leaf = merkle_log.placement(device_id, last).leaf_index
        assert leaf is not None
        assert "awaiting the next signed checkpoint" in log_status()
        signed = keeper.sign_if_due(now=True)
        assert signed is not None
        keeper.close()
    finally:
        store.close()
        merkle_log.close()
    status = log_status()
    assert "in checkpoint" in status
    assert f"leaf {leaf:,} of the signed checkpoint of size {signed.size:,}" in status
    assert f"/api/v1/log/proofs/inclusion?stream_id={device_id}&amp;seq={last}" in status
