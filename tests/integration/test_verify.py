"""``coreline verify`` through the real command line, against stores tampered with
the way an attacker with database superuser rights would: append-only triggers
disabled (PostgreSQL) or dropped (SQLite), then rows updated, deleted or renumbered."""

import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest

from schemas import decode_event_batch
from schemas.canonical import sha256_hex
from services.eventstore import Backend, DatabaseUrl, open_event_store
from tests.support.streams import device_stream
from tests.support.tamper import as_attacker
from tests.support.vectors import STREAM_DEVICES, batch_payload, load_stream

_ALL_VERIFIED = "3 streams, 95 events: 3 verified, 0 broken, 0 incomplete"


def _coreline(*args: str, database_url: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("CORELINE_")}
    if database_url:
        env["CORELINE_DATABASE_URL"] = database_url
    command = [sys.executable, "-m", "services", "verify", *args]
    return subprocess.run(
        command, capture_output=True, text=True, env=env, timeout=120, check=False
    )


def _verify(url: str, *target: str) -> subprocess.CompletedProcess[str]:
    return _coreline(*target, "--database-url", url)


def _store_vectors(url: str, vectors_dir: Path) -> None:
    """Append the three vector streams as the gateway would: decoded from batches."""
    store = open_event_store(url)
    for device_id in STREAM_DEVICES:
        events = load_stream(vectors_dir, device_id)["events"]
        decoded = decode_event_batch(device_id, batch_payload(device_id, events))
        assert decoded.rejections == ()
        assert store.append(decoded.events).appended == len(events)
    store.close()


def _event_id(vectors_dir: Path, device_id: str, seq: int) -> str:
    event: dict[str, Any] = load_stream(vectors_dir, device_id)["events"][seq - 1]
    assert event["seq"] == seq
    event_id: str = event["event_id"]
    return event_id


def _stored_body(url: str, device_id: str, seq: int) -> bytes:
    store = open_event_store(url)
    [stored] = store.read_stream(device_id, seq, seq)
    store.close()
    return stored.body


def _set_body(url: str, device_id: str, seq: int, body: bytes, *, rehash: bool = False) -> None:
    statement = "UPDATE events SET body = %s WHERE stream_id = %s AND seq = %s"
    params: tuple[object, ...] = (body, device_id, seq)
    if rehash:
        statement = "UPDATE events SET body = %s, hash = %s WHERE stream_id = %s AND seq = %s"
        params = (body, sha256_hex(body), device_id, seq)
    as_attacker(url, (statement, params))


def _swap_seqs(url: str, device_id: str, first: int, second: int) -> None:
    # The (stream_id, seq) key is checked row by row, so through a spare seq.
    move = "UPDATE events SET seq = %s WHERE stream_id = %s AND seq = %s"
    as_attacker(
        url,
        (move, (10**9, device_id, first)),
        (move, (first, device_id, second)),
        (move, (second, device_id, 10**9)),
    )


def test_the_store_itself_refuses_tampering(store_url: str) -> None:
    """Without disabling the triggers, UPDATE and DELETE of events are refused."""
    store = open_event_store(store_url)
    store.append(device_stream("HP-000001", 2))
    store.close()
    database = DatabaseUrl.parse(store_url)
    if database.backend is Backend.SQLITE:
        with (
            pytest.raises(sqlite3.IntegrityError, match="append-only"),
            sqlite3.connect(database.sqlite_path) as connection,
        ):
            connection.execute("DELETE FROM events WHERE seq = 2")
        connection.close()
        return
    with (
        pytest.raises(psycopg.errors.RaiseException, match="append-only"),
        psycopg.connect(store_url) as pg_connection,
    ):
        pg_connection.execute("UPDATE events SET type = 'x'")


def test_an_untouched_store_verifies(store_url: str, vectors_dir: Path) -> None:
    """Every stored vector chain verifies: one line per stream, a summary, exit 0;
    the database is also found through CORELINE_DATABASE_URL."""
    _store_vectors(store_url, vectors_dir)
    result = _coreline("--all", database_url=store_url)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines() == [
        "HP-000011  verified  39 events",
        "HP-000011  unsigned",
        "HP-000012  verified  25 events",
        "HP-000012  unsigned",
        "HP-000013  verified  31 events",
        "HP-000013  unsigned",
        _ALL_VERIFIED,
    ]


def test_an_empty_store_has_nothing_to_fail(store_url: str) -> None:
    """No streams stored: nothing is broken, exit 0."""
    result = _verify(store_url, "--all")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["0 streams, 0 events: 0 verified, 0 broken, 0 incomplete"]


def test_a_payload_altered_in_place_is_named(store_url: str, vectors_dir: Path) -> None:
    """One byte of a stored payload changed: exit 1, naming device, seq and event."""
    _store_vectors(store_url, vectors_dir)
    body = _stored_body(store_url, "HP-000012", 7)
    _set_body(store_url, "HP-000012", 7, body.replace(b'"depth_mm":1.5', b'"depth_mm":1.9'))
    result = _verify(store_url, "--all")
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "HP-000011  verified  39 events"
    assert lines[2] == (
        f"HP-000012  BROKEN at seq 7 (event {_event_id(vectors_dir, 'HP-000012', 7)}): "
        "the stored event does not hash to its stored hash: it was altered"
    )
    assert lines[4] == "HP-000013  verified  31 events"
    assert lines[6] == "3 streams, 95 events: 2 verified, 1 broken, 0 incomplete"


def test_a_payload_rewritten_as_text_is_named(sqlite_url: str, vectors_dir: Path) -> None:
    """SQLite stores whatever type it is given: a body rewritten as text is reported
    as altered (exit 1), not a crash of the verifier."""
    _store_vectors(sqlite_url, vectors_dir)
    body = _stored_body(sqlite_url, "HP-000012", 7).decode()
    as_attacker(
        sqlite_url,
        ("UPDATE events SET body = %s WHERE stream_id = %s AND seq = %s",
         (body.replace('"depth_mm":1.5', '"depth_mm":1.9'), "HP-000012", 7)),
    )  # fmt: skip
    result = _verify(sqlite_url, "--device", "HP-000012")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "BROKEN at seq 7" in result.stdout
    assert "Traceback" not in result.stderr


def test_an_altered_and_rehashed_payload_breaks_the_next_link(
    postgres_url: str, vectors_dir: Path
) -> None:
    """Recomputing the altered event's hash is caught by its successor's prev_hash."""
    _store_vectors(postgres_url, vectors_dir)
    body = _stored_body(postgres_url, "HP-000011", 20)
    _set_body(postgres_url, "HP-000011", 20, body.replace(b'"cores":', b'"cores":1'), rehash=True)
    result = _verify(postgres_url, "--all")
    assert result.returncode == 1
    assert (
        f"HP-000011  BROKEN at seq 21 (event {_event_id(vectors_dir, 'HP-000011', 21)}): "
        "prev_hash is not the stored hash of seq 20" in result.stdout
    )


def test_a_deleted_row_leaves_the_chain_incomplete(store_url: str, vectors_dir: Path) -> None:
    """A row deleted from the middle: exit 1, naming the missing seq and the event
    after the gap."""
    _store_vectors(store_url, vectors_dir)
    as_attacker(
        store_url, ("DELETE FROM events WHERE stream_id = %s AND seq = %s", ("HP-000013", 10))
    )
    result = _verify(store_url, "--all")
    assert result.returncode == 1
    assert (
        "HP-000013  INCOMPLETE: events 10..10 are missing "
        f"(before seq 11, event {_event_id(vectors_dir, 'HP-000013', 11)})"
    ) in result.stdout.splitlines()
    assert result.stdout.splitlines()[-1] == (
        "3 streams, 94 events: 2 verified, 0 broken, 1 incomplete"
    )


def test_swapped_seqs_are_named(store_url: str, vectors_dir: Path) -> None:
    """Two rows' seq values exchanged: exit 1, the lower seq named with the event now
    stored there."""
    _store_vectors(store_url, vectors_dir)
    _swap_seqs(store_url, "HP-000011", 5, 6)
    result = _verify(store_url, "--all")
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert lines[0] == (
        f"HP-000011  BROKEN at seq 5 (event {_event_id(vectors_dir, 'HP-000011', 6)}): "
        "the hashed event says it is seq 6: stored seqs were renumbered or swapped"
    )
    assert lines[1].startswith(
        f"           also BROKEN at seq 6 (event {_event_id(vectors_dir, 'HP-000011', 5)})"
    )


def test_verify_one_device(postgres_url: str, vectors_dir: Path) -> None:
    """--device checks that device's stream alone."""
    _store_vectors(postgres_url, vectors_dir)
    body = _stored_body(postgres_url, "HP-000012", 3)
    _set_body(postgres_url, "HP-000012", 3, body.replace(b"lower_face", b"upper_face"))
    clean = _verify(postgres_url, "--device", "HP-000011")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert clean.stdout.splitlines() == [
        "HP-000011  verified  39 events",
        "HP-000011  unsigned",
        "1 stream, 39 events: 1 verified, 0 broken, 0 incomplete",
    ]
    broken = _verify(postgres_url, "--device", "HP-000012")
    assert broken.returncode == 1
    assert broken.stdout.startswith(
        f"HP-000012  BROKEN at seq 3 (event {_event_id(vectors_dir, 'HP-000012', 3)})"
    )
    unknown = _verify(postgres_url, "--device", "HP-000099")
    assert unknown.returncode == 2
    assert unknown.stderr.strip() == "coreline verify: no events are stored for device HP-000099"


def test_verify_one_session(postgres_url: str, vectors_dir: Path) -> None:
    """--session finds the session's device, reports its stream, and answers for the
    session: trouble after the session leaves it verified, trouble before spoils it."""
    _store_vectors(postgres_url, vectors_dir)
    expected = load_stream(vectors_dir, "HP-000011")["expected"]
    session_id = expected["session_id"]
    store = open_event_store(postgres_url)
    store.append(device_stream("HP-000011", 3, first_seq=40, prev_hash=expected["last_hash"]))
    store.close()

    _set_body(postgres_url, "HP-000011", 42, _stored_body(postgres_url, "HP-000011", 42) + b" ")
    after = _verify(postgres_url, "--session", session_id)
    assert after.returncode == 0, after.stdout + after.stderr
    assert after.stdout.splitlines()[0].startswith("HP-000011  BROKEN at seq 42 ")
    assert after.stdout.splitlines()[-1] == (
        f"session {session_id} (HP-000011, seq 3..39)  verified  37 events, chained from seq 1"
    )

    body = _stored_body(postgres_url, "HP-000011", 2)
    _set_body(postgres_url, "HP-000011", 2, body.replace(b"L2611A", b"L2611B"))
    before = _verify(postgres_url, "--session", session_id)
    assert before.returncode == 1
    assert before.stdout.splitlines()[-1].startswith(
        f"session {session_id} (HP-000011, seq 3..39)  BROKEN at seq 2 "
        f"(event {_event_id(vectors_dir, 'HP-000011', 2)})"
    )

    unknown = _verify(postgres_url, "--session", "00000000-0000-4000-8000-000000000000")
    assert unknown.returncode == 2
    assert "coreline verify: no stored event belongs to session" in unknown.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "one of --device ID, --session ID or --all"),
        (("--all", "--device", "HP-000011"), "one of --device ID, --session ID or --all"),
        (("--session", "S-1"), "a session id is a UUID"),
        (("--all", "--database-url", "mysql://root:s3cret@db/x"), "CORELINE_DATABASE_URL"),
    ],
)
def test_bad_arguments_exit_2(args: tuple[str, ...], message: str) -> None:
    """What cannot be verified is said on stderr, in the CLI's usual form, exit 2."""
    result = _coreline(*args)
    assert result.returncode == 2
    assert result.stderr.startswith("coreline verify: ")
    assert message in result.stderr
    assert "s3cret" not in result.stderr + result.stdout


def test_a_database_without_schema_exits_2(tmp_path: Path) -> None:
    """An un-migrated database is a configuration problem, not a verdict."""
    result = _verify(f"sqlite:///{tmp_path / 'empty.db'}", "--all")
    assert result.returncode == 2
    assert "coreline db upgrade" in result.stderr
    assert "Traceback" not in result.stderr
