"""The restore drill (docs/operations.md, "Restore"): real agents, Mosquitto, gateway and
projector over a PostgreSQL that archives its WAL to pgBackRest; a full backup taken by
the shipped wrapper (deploy/patroni/backup.sh), more events, an incremental one, more
events after a chosen time, then the database lost and restored to that time into a
fresh cluster.

The restored store holds exactly the events committed before the target; ``coreline db
upgrade`` changes nothing, ``coreline verify --all`` passes and the read models equal a
replay.  The devices' outboxes and the resend protocol then refill what the restore
dropped, each event once.  A witness that kept a checkpoint from after the target
reports the log inconsistent (the restore dropped logged events, and the log regrew
differently), while one whose last checkpoint came before the target still verifies."""

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import orjson
import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from edge_agent.outbox import Outbox
from services.eventstore import Cursor, open_event_store
from services.merkle_log import MerkleLog
from tests.support.deploy import BACKUP_SCRIPT
from tests.support.failover import ReadModels, read_models, settled
from tests.support.fleet_process import device_ids
from tests.support.mosquitto import TemporaryMosquitto
from tests.support.pgbackrest import PgBackRest, archiving_postgres, wait_promoted
from tests.support.platform_processes import GatewayProcess, coreline, python_module
from tests.support.postgres import TemporaryPostgres

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

DEVICES = 4
PER_PHASE = 20
"""Events each device records in each of the three phases."""

Chains = dict[str, dict[int, str]]
"""Per stream, seq → hash."""
"""Per read-model table, its rows (each value's repr), sorted."""


# -- the platform and the fleet ------------------------------------------------------------


@dataclass(frozen=True)
class Drill:
    """Where the drill keeps its things, and the processes it runs against a database."""

    root: Path
    broker: TemporaryMosquitto
    repository: PgBackRest

    @property
    def key(self) -> Path:
        return self.root / "keys" / "coreline-log.key"

    @property
    def outbox(self) -> Path:
        return self.root / "fleet.db"

    @property
    def metrics(self) -> Path:
        """Where the backup wrapper writes its metrics (the server's account writes them)."""
        return self.repository.root / "metrics"

    def cli(self, *args: str, url: str) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CORELINE_")}
        env |= {"CORELINE_DATABASE_URL": url, "CORELINE_LOG_KEY_FILE": str(self.key)}
        return subprocess.run(
            [sys.executable, "-m", "services", *args],
            capture_output=True, text=True, env=env, timeout=120, check=False,
        )  # fmt: skip

    def witness(self, state: str, url: str) -> subprocess.CompletedProcess[str]:
        return self.cli("audit", "witness", "--state", str(self.root / state), url=url)

    def backup(self, kind: str = "auto") -> subprocess.CompletedProcess[str]:
        """deploy/patroni/backup.sh, as the server's account."""
        return self.repository.run(str(BACKUP_SCRIPT), kind, BACKUP_METRICS_DIR=str(self.metrics))

    @contextmanager
    def platform(self, url: str, name: str) -> Iterator[Path]:
        """A gateway and the projector (read models, alerts, the transparency log);
        yields the directory of their logs."""
        logs = self.root / name
        logs.mkdir()
        gateway = GatewayProcess(url, self.broker, logs / "gateway.log")
        projector = coreline(
            "projector", "--metrics-port", "0", log=logs / "projector.log", database_url=url,
            mqtt_url=self.broker.url, webhook_master_key="m" * 32, log_key_file=str(self.key),
        )  # fmt: skip
        try:
            yield logs
        finally:
            projector.terminate()
            projector.wait(timeout=30)
            gateway.stop()

    def run_fleet(self, url: str, name: str, events: int, holding: int) -> None:
        """Agents for DEVICES handpieces on one outbox: each records ``events`` more,
        until its outbox holds ``holding``; they stop once the store has them all."""
        log = self.root / f"{name}.log"
        arguments = ["--devices", str(DEVICES), "--events", str(events), "--rate", "40"]
        fleet = python_module(
            "tests.support.fleet_process", str(self.outbox), self.broker.url, *arguments, log=log
        )

        def delivered() -> bool:
            assert fleet.poll() is None, log.read_text()[-2000:]
            if not self.outbox.exists():
                return False
            recorded, stored = _outbox_chains(self.outbox), _stored(url)
            return all(
                len(chain) == holding and stored.get(device, {}) == chain
                for device, chain in recorded.items()
            )

        try:
            _eventually(delivered, f"every event of the fleet stored ({name})")
        finally:
            fleet.send_signal(signal.SIGTERM)
            fleet.wait(timeout=30)


@dataclass(frozen=True)
class AtTheTarget:
    """The chosen recovery target, what the store and the read models held then, and
    the log's leaves (stream, seq) once the third phase was in."""

    moment: datetime
    events: Chains
    read_models: ReadModels
    log_order_before_loss: list[tuple[str, int]]


def _ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def _outbox_chains(outbox: Path) -> Chains:
    opened = Outbox(outbox)
    try:
        chains: Chains = {}
        for device_id in device_ids(DEVICES):
            entries = opened.between(device_id, 1, opened.head(device_id)[0])
            chains[device_id] = {e.seq: orjson.loads(e.wire)["hash"] for e in entries}
        return chains
    finally:
        opened.close()


def _stored(url: str) -> Chains:
    """Every stored event, device and platform streams alike."""
    store = open_event_store(url)
    try:
        chains: Chains = {}
        cursor = Cursor.START
        while records := store.read_records(cursor, 5000):
            for record in records:
                chains.setdefault(record.stream_id, {})[record.seq] = record.hash
            cursor = records[-1].cursor
        return chains
    finally:
        store.close()


def _global_order(url: str) -> list[tuple[str, int]]:
    merkle_log = MerkleLog.open(url)
    try:
        return [(leaf.stream_id, leaf.seq) for leaf in merkle_log.leaves(limit=100_000)]
    finally:
        merkle_log.close()


def _eventually(
    check: Callable[[], bool], what: str, within_s: float = 60.0, every_s: float = 0.2
) -> None:
    deadline = time.monotonic() + within_s
    while not check():
        assert time.monotonic() < deadline, f"not within {within_s} s: {what}"
        time.sleep(every_s)


# -- what a restore must preserve ----------------------------------------------------------


def _schema(url: str) -> list[tuple[str, ...]]:
    with psycopg.connect(url) as connection:
        relations = connection.execute(
            "SELECT c.relname, c.relkind::text FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' ORDER BY 1"
        ).fetchall()
        version = connection.execute("SELECT version_num FROM alembic_version").fetchall()
    return [*relations, *version]


def _database_now(url: str) -> datetime:
    with psycopg.connect(url) as connection:
        row = connection.execute("SELECT clock_timestamp()").fetchone()
    assert row is not None
    moment: datetime = row[0]
    return moment


def _backup_metrics(metrics: Path, kind: str) -> dict[str, float]:
    text = (metrics / f"coreline_backup_coreline_{kind}.prom").read_text()
    samples = {}
    for family in text_string_to_metric_families(text):
        (sample,) = family.samples
        assert sample.labels == {"stanza": "coreline", "type": kind}
        samples[sample.name] = sample.value
    return samples


# -- the drill -----------------------------------------------------------------------------


def test_a_point_in_time_restore_is_refilled_by_devices_and_seen_by_witnesses(
    tmp_path: Path,
) -> None:
    """Backups full and incremental, a restore to a time between two phases of ingest,
    and what each party then sees: the store, the schema, the chains, the read models,
    the devices and the witnesses."""
    with archiving_postgres() as (server, repository), TemporaryMosquitto() as broker:
        drill = Drill(tmp_path, broker, repository)
        at_target = _ingest_around_a_target(drill, server.create_database("coreline"))
        repository.check()  # the segment holding the third phase reaches the repository
        server.stop()  # the database is lost
        _assert_backups_reported(drill)

        restored = TemporaryPostgres(durable=True)
        try:
            incremental = repository.backups()[-1]
            assert repository.restore_to_time(at_target.moment, into=restored) == (
                incremental.label
            )
            _start(restored)
            _check_restored(drill, restored.url("coreline"), at_target)
            _refill_and_witness(drill, restored.url("coreline"), at_target)
            repository.serve(restored)
            repository.check()  # the restored cluster archives on, on a timeline of its own
        finally:
            restored.destroy()


def _ingest_around_a_target(drill: Drill, url: str) -> AtTheTarget:
    """Three phases of ingest: a full backup after the first, an incremental one after
    the second, then the target; a witness follows the log throughout, and a copy of
    its state is kept as it was before the target."""
    _ok(drill.cli("db", "upgrade", url=url))
    with drill.platform(url, "platform"):
        drill.run_fleet(url, "fleet-1", PER_PHASE, PER_PHASE)
        _ok(drill.backup())  # auto: no full backup yet, so a full one
        drill.run_fleet(url, "fleet-2", PER_PHASE, 2 * PER_PHASE)
        _ok(drill.backup())  # auto: a recent full one, so an incremental one
        _eventually(lambda: settled(url), "the log signed up to the second phase", every_s=0.5)
        _ok(drill.witness("witness", url))
        shutil.copytree(drill.root / "witness", drill.root / "early-witness")

        events, models = _stored(url), read_models(url)
        moment = _database_now(url)
        time.sleep(1)  # nothing commits around the target: the two snapshots prove it
        assert _stored(url) == events

        drill.run_fleet(url, "fleet-3", PER_PHASE, 3 * PER_PHASE)
        _eventually(lambda: settled(url), "the log signed up to the third phase", every_s=0.5)
        grew = drill.witness("witness", url)
        assert grew.returncode == 0, grew.stderr
        assert "grew from size" in grew.stdout
        order = _global_order(url)
    assert _events(_stored(url)) - _events(events), "the third phase stored nothing"
    return AtTheTarget(moment, events, models, order)


def _assert_backups_reported(drill: Drill) -> None:
    """The wrapper took a full backup, then an incremental one on it, and reports a
    failure (the database is gone) while keeping the time of the last success."""
    full, incremental = drill.repository.backups()
    assert (full.kind, incremental.kind) == ("full", "incr")
    assert incremental.references == (full.label,)
    assert drill.backup("incr").returncode != 0
    failed = _backup_metrics(drill.metrics, "incr")
    assert failed["coreline_backup_last_status"] == 0
    last_success = failed["coreline_backup_last_success_timestamp_seconds"]
    assert incremental.stopped_at.timestamp() <= last_success + 1
    assert last_success <= failed["coreline_backup_last_attempt_timestamp_seconds"]
    succeeded = _backup_metrics(drill.metrics, "full")
    assert succeeded["coreline_backup_last_status"] == 1
    assert succeeded["coreline_backup_last_success_timestamp_seconds"] >= (
        full.stopped_at.timestamp() - 1
    )


def _start(restored: TemporaryPostgres) -> None:
    """Start a restored cluster and wait for it to reach its target and be promoted."""
    try:
        restored.start()
        wait_promoted(restored)
    except (subprocess.CalledProcessError, AssertionError) as error:
        log = restored.data_dir.parent / "server.log"
        raise AssertionError(f"{error}\n{log.read_text()[-4000:]}") from error


def _check_restored(drill: Drill, url: str, at_target: AtTheTarget) -> None:
    """What the operator runs on a restored database before starting the platform, and
    what a witness that last looked after the target sees of it."""
    assert _stored(url) == at_target.events  # exactly what was committed before the target
    schema = _schema(url)
    _ok(drill.cli("db", "upgrade", url=url))
    assert _schema(url) == schema  # a no-op
    assert "verified" in _ok(drill.cli("verify", "--all", url=url))
    assert read_models(url) == at_target.read_models  # as they were at the target
    assert "replayed" in _ok(drill.cli("replay", url=url))
    assert read_models(url) == at_target.read_models  # and equal to a replay
    shrunk = drill.witness("witness", url)
    assert shrunk.returncode == 1
    assert "the log shrank" in shrunk.stderr


def _refill_and_witness(drill: Drill, url: str, at_target: AtTheTarget) -> None:
    """The platform restarted on the restored database; the agents come back online
    and answer the requests for their tails; then both witnesses look again."""
    with drill.platform(url, "restored") as logs:
        drill.run_fleet(url, "fleet-4", 0, 3 * PER_PHASE)
        _eventually(lambda: settled(url), "the refilled log signed", every_s=0.5)
    _assert_refilled_once(drill, url, at_target.events, logs)
    # The same device events, logged again in the order they came back in.
    order = _global_order(url)
    assert order[: len(at_target.log_order_before_loss)] != at_target.log_order_before_loss
    rewritten = drill.witness("witness", url)
    assert rewritten.returncode == 1
    assert "INCONSISTENT" in rewritten.stderr
    early = drill.witness("early-witness", url)
    assert early.returncode == 0, early.stderr
    assert "grew from size" in early.stdout


def _assert_refilled_once(drill: Drill, url: str, kept: Chains, logs: Path) -> None:
    """Every device's stored stream is its outbox, event for event, each stored once;
    what the restore kept is unchanged; the gateway asked each device for its tail."""
    stored, recorded = _stored(url), _outbox_chains(drill.outbox)
    for device_id, chain in recorded.items():
        assert len(chain) == 3 * PER_PHASE
        assert stored[device_id] == chain
        assert stored[device_id].items() >= kept[device_id].items()
    with psycopg.connect(url) as connection:
        row = connection.execute(
            "SELECT count(*), count(DISTINCT (stream_id, seq)) FROM events"
        ).fetchone()
    assert row is not None
    assert row[0] == row[1] == sum(len(chain) for chain in stored.values())
    gateway_log = (logs / "gateway.log").read_text()
    for device_id in recorded:
        assert f"asked {device_id} for its tail" in gateway_log
    _ok(drill.cli("verify", "--all", url=url))


def _events(chains: Chains) -> set[tuple[str, int]]:
    return {(stream, seq) for stream, chain in chains.items() for seq in chain}
