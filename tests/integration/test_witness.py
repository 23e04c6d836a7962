"""``coreline audit witness`` (DESIGN §11): exits 0 while the log grows consistently,
and 1 naming the inconsistency when the operator rewrites history and re-signs it
with the platform's own key: an altered event (a split view at the same size, or an
inconsistent larger log), the newest events deleted (a smaller log), or a checkpoint
signed by another key.  Through the real command line, on both databases, from the
database and from the API."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy

from services.api import Role, create_token
from services.eventstore import EventStore, open_event_store
from tests.support.log_keeping import log_and_sign
from tests.support.platform_processes import serving_api
from tests.support.postgres import free_port
from tests.support.streams import device_stream
from tests.support.tamper import as_attacker

ORIGIN = "coreline/log/v1"
DEVICE = "HP-000301"


def _coreline(*args: str, key: Path, database_url: str) -> subprocess.CompletedProcess[str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("CORELINE_")}
    env |= {"CORELINE_DATABASE_URL": database_url, "CORELINE_LOG_KEY_FILE": str(key)}
    argv = [sys.executable, "-m", "services", *args]
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120, check=False)


@pytest.fixture
def key(tmp_path: Path, store_url: str) -> Path:
    """The platform's log key, made by ``coreline audit init-key``."""
    path = tmp_path / "keys" / "coreline-log.key"
    made = _coreline("audit", "init-key", key=path, database_url=store_url)
    assert made.returncode == 0, made.stderr
    assert made.stdout.startswith(f"{ORIGIN}+")
    assert path.stat().st_mode & 0o077 == 0
    return path


def _grow(store: EventStore, count: int) -> None:
    head = store.head(DEVICE)
    if head is None:
        store.append(device_stream(DEVICE, count))
    else:
        store.append(device_stream(DEVICE, count, first_seq=head.seq + 1, prev_hash=head.hash))


def _witness(state: Path, key: Path, url: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return _coreline("audit", "witness", "--state", str(state), *extra, key=key, database_url=url)


def test_a_witness_follows_a_growing_log(
    store: EventStore, store_url: str, key: Path, tmp_path: Path
) -> None:
    """First run: the key is trusted on first use and the checkpoint kept; later runs
    check each larger checkpoint's consistency proof and keep it; `audit checkpoint`
    writes the same signed note."""
    state = tmp_path / "witness"
    _grow(store, 9)
    log_and_sign(store, store_url, key)
    first = _witness(state, key, store_url)
    assert first.returncode == 0, first.stderr
    assert "trusting the log key on first use" in first.stderr
    assert (state / "checkpoint").read_text().startswith(f"{ORIGIN}\n9\n")
    for more in (1, 6, 17):
        _grow(store, more)
        log_and_sign(store, store_url, key)
        again = _witness(state, key, store_url)
        assert again.returncode == 0, again.stderr
        assert "consistent" in again.stdout
    unchanged = _witness(state, key, store_url)
    assert unchanged.returncode == 0
    assert "unchanged at size 33" in unchanged.stdout
    out = tmp_path / "latest.note"
    written = _coreline("audit", "checkpoint", "--out", str(out), key=key, database_url=store_url)
    assert written.returncode == 0, written.stderr
    assert out.read_text() == (state / "checkpoint").read_text()


def test_an_altered_event_rebuilt_and_re_signed_is_caught(
    store: EventStore, store_url: str, key: Path, tmp_path: Path
) -> None:
    """An event's hash changed in the database: a plain rebuild refuses (the kept
    checkpoint is contradicted); a forced one re-signs the same size with another root,
    which the witness reports as a split view, and the log grown after it as
    inconsistent with the checkpoint it kept."""
    state = tmp_path / "witness"
    _grow(store, 12)
    log_and_sign(store, store_url, key)
    assert _witness(state, key, store_url).returncode == 0
    as_attacker(
        store_url,
        ("UPDATE events SET hash = %s WHERE stream_id = %s AND seq = %s", ("cd" * 32, DEVICE, 5)),
    )
    refused = _coreline("audit", "rebuild-log", key=key, database_url=store_url)
    assert refused.returncode == 1
    assert "contradicted: the checkpoint of size 12" in refused.stderr
    forced = _coreline(
        "audit", "rebuild-log", "--discard-contradicted", key=key, database_url=store_url
    )
    assert forced.returncode == 0, forced.stderr
    split = _witness(state, key, store_url)
    assert split.returncode == 1
    assert "split view: a different root at the same size 12" in split.stderr
    _grow(store, 4)
    log_and_sign(store, store_url, key)
    rewritten = _witness(state, key, store_url)
    assert rewritten.returncode == 1
    assert "inconsistent: the proof from size 12 to 16 does not verify" in rewritten.stderr
    assert (state / "checkpoint").read_text().startswith(f"{ORIGIN}\n12\n")  # evidence kept


def test_deleted_newest_events_rebuilt_are_caught_as_a_smaller_log(
    store: EventStore, store_url: str, key: Path, tmp_path: Path
) -> None:
    """The newest events deleted and the log rebuilt and re-signed: the witness reports
    that the log shrank."""
    state = tmp_path / "witness"
    _grow(store, 15)
    log_and_sign(store, store_url, key)
    assert _witness(state, key, store_url).returncode == 0
    as_attacker(store_url, ("DELETE FROM events WHERE stream_id = %s AND seq > %s", (DEVICE, 11)))
    forced = _coreline(
        "audit", "rebuild-log", "--discard-contradicted", key=key, database_url=store_url
    )
    assert forced.returncode == 0, forced.stderr
    shrunk = _witness(state, key, store_url)
    assert shrunk.returncode == 1
    assert "the log shrank: size 11 is smaller than the kept 15" in shrunk.stderr


def test_a_checkpoint_signed_by_another_key_is_refused(
    store: EventStore, store_url: str, key: Path, tmp_path: Path
) -> None:
    """A witness given the log's key refuses a checkpoint signed by a key the operator
    swapped in, however consistent the tree."""
    state = tmp_path / "witness"
    _grow(store, 5)
    log_and_sign(store, store_url, key)
    given = (key.parent / "coreline-log.key.pub").read_text().strip()
    assert _witness(state, key, store_url, "--public-key", given).returncode == 0
    other = tmp_path / "other" / "coreline-log.key"
    assert _coreline("audit", "init-key", key=other, database_url=store_url).returncode == 0
    _grow(store, 3)
    log_and_sign(store, store_url, other)
    refused = _witness(state, other, store_url)
    assert refused.returncode == 1
    assert "bad signature" in refused.stderr


def test_a_world_readable_key_is_refused(store_url: str, key: Path) -> None:
    """A key file every user may read is refused with a message saying what to do."""
    key.chmod(0o644)
    result = _coreline("audit", "rebuild-log", key=key, database_url=store_url)
    assert result.returncode != 0
    assert "readable by every user: chmod 600" in result.stderr


def test_a_witness_outside_the_operator_reads_the_api(sqlite_url: str, tmp_path: Path) -> None:
    """With --api and an auditor's token the witness fetches the checkpoint, the key
    and consistency proofs over HTTP, and still catches a shrunken log (the API reads
    the log through the same code on both databases: SQLite suffices here)."""
    key = tmp_path / "keys" / "coreline-log.key"
    assert _coreline("audit", "init-key", key=key, database_url=sqlite_url).returncode == 0
    engine = sqlalchemy.create_engine(sqlite_url)
    _, token = create_token(engine, Role.AUDITOR, None, "witness")
    engine.dispose()
    store = open_event_store(sqlite_url)
    state = tmp_path / "witness"
    _grow(store, 8)
    log_and_sign(store, sqlite_url, key)
    port = free_port()
    settings = {"database_url": sqlite_url, "log_key_file": str(key)}
    with serving_api(port, tmp_path / "api.log", **settings):
        api = ("--api", f"http://127.0.0.1:{port}", "--token", token)
        assert _witness(state, key, sqlite_url, *api).returncode == 0
        _grow(store, 5)
        log_and_sign(store, sqlite_url, key)
        grown = _witness(state, key, sqlite_url, *api)
        assert grown.returncode == 0, grown.stderr
        assert "grew from size 8 to 13" in grown.stdout
        deleted = ("DELETE FROM events WHERE stream_id = %s AND seq > %s", (DEVICE, 10))
        as_attacker(sqlite_url, deleted)
        rebuild = ("audit", "rebuild-log", "--discard-contradicted")
        assert _coreline(*rebuild, key=key, database_url=sqlite_url).returncode == 0
        shrunk = _witness(state, key, sqlite_url, *api)
        assert shrunk.returncode == 1
        assert "shrank" in shrunk.stderr
    store.close()
