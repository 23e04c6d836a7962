"""A real Patroni cluster on loopback: one etcd and three PostgreSQL 15 nodes, each
managed by its own Patroni, with synchronous replication, for failover tests.

Node 1 bootstraps the cluster; nodes 2 and 3 then clone it with ``pg_basebackup``.
The timings are short so that a drill fits in CI: a leader key lives ``TTL_S``, each
Patroni looks at its node every ``LOOP_WAIT_S``, and a crashed primary is failed
over at once (``primary_start_timeout: 0``) instead of being restarted in place.

As root, Patroni (and so PostgreSQL, which refuses to run as root) runs as the
``postgres`` user: ``Popen(user=...)`` switches user in the child before ``exec``, so
the process a test kills is Patroni itself, not a wrapper around it.
"""

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Final, Self

import httpx
import psycopg
import yaml

from tests.support.etcd import TemporaryEtcd
from tests.support.postgres import free_port
from tests.support.scratch_server import ScratchServer

SCOPE: Final = "coreline"
TTL_S: Final = 10
"""How long a leader key lives without its Patroni renewing it: how soon a primary
whose Patroni died is replaced."""
LOOP_WAIT_S: Final = 1
RETRY_TIMEOUT_S: Final = 3
"""``loop_wait + 2 × retry_timeout <= ttl``: a Patroni that cannot reach etcd demotes
its primary before the key expires and another node can take it."""
SYNCHRONOUS_MODE_STRICT: Final = True
"""Writes wait for a synchronous standby even when none is left (docs/high-availability.md
says why: the devices hold what is not yet stored, so waiting costs nothing but time,
whereas a commit that only the lost primary had would also be in a signed checkpoint)."""
POSTGRES_BIN: Final = Path("/usr/lib/postgresql/15/bin")


def find_patroni() -> str:
    found = shutil.which("patroni")
    if not found:
        raise RuntimeError("patroni not found: apt-get install patroni")
    return found


@dataclass(frozen=True, slots=True)
class Member:
    """One node as Patroni's REST API ``/cluster`` describes it."""

    name: str
    role: str
    """``leader``, ``sync_standby`` or ``replica``."""
    state: str
    timeline: int | None


class PatroniNode:
    """One PostgreSQL node and the Patroni that manages it."""

    def __init__(self, name: str, root: Path, etcd: TemporaryEtcd) -> None:
        self.name = name
        self.root = root
        self.pg_port = 0
        self.api_port = 0
        self.data_dir = root / "data"
        self.config_path = root / "patroni.yml"
        self.log_path = root / "patroni.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.killed = False
        """Whether its Patroni was killed on purpose (and not restarted since)."""
        self._etcd = etcd
        self._log: IO[bytes] | None = None
        root.mkdir(parents=True)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def url(self, dbname: str = "postgres") -> str:
        """This node alone (whatever its role)."""
        return f"postgresql://postgres@127.0.0.1:{self.pg_port}/{dbname}"

    def start(self) -> None:
        if not self.config_path.exists():
            # Ports are chosen as late as possible: another process may take a port
            # found free between the choice and the server binding it.
            self.pg_port, self.api_port = free_port(), free_port()
            self.config_path.write_text(
                yaml.safe_dump(_node_config(self, self._etcd), sort_keys=False)
            )
            _hand_over(self.config_path)
        self._log = self.log_path.open("ab")
        self.killed = False
        self.process = subprocess.Popen(
            [find_patroni(), str(self.config_path)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=self.root,
            start_new_session=True,
            **_as_postgres(),
        )

    @property
    def patroni_alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def exited(self) -> bool:
        """Whether its Patroni ended without being killed on purpose."""
        return self.process is not None and not self.patroni_alive and not self.killed

    def postmaster_pid(self) -> int | None:
        """The running postmaster's pid (from its pid file), or ``None``."""
        try:
            pid = int((self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        return pid

    def kill_postmaster(self) -> int:
        """``kill -9`` this node's postmaster (its Patroni stays); the pid killed."""
        pid = self.postmaster_pid()
        assert pid is not None, f"{self.name} has no running postmaster"
        os.kill(pid, signal.SIGKILL)
        return pid

    def kill_patroni(self) -> None:
        """``kill -9`` this node's Patroni; its PostgreSQL goes on running, unmanaged."""
        assert self.process is not None
        self.killed = True
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        """Stop at once: Patroni killed, PostgreSQL shut down immediately (a test's
        cluster keeps nothing worth a clean shutdown)."""
        if self.patroni_alive:
            assert self.process is not None
            self.process.kill()
            self.process.wait(timeout=10)
        pid = self.postmaster_pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGQUIT)
            _wait_until(lambda: self.postmaster_pid() is None, 30, f"{self.name} to stop")
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_tail(self, characters: int = 3000) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return f"--- {self.name} ---\n{text[-characters:]}"


class PatroniCluster(ScratchServer):
    """etcd and three Patroni nodes, started in order; ``url`` reaches whichever node
    is primary (libpq tries each host for a read-write session)."""

    def __init__(self, nodes: int = 3) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="coreline-patroni-"))
        self.etcd = TemporaryEtcd()
        self.nodes = [PatroniNode(f"node{n}", self.root / f"node{n}", self.etcd)
                      for n in range(1, nodes + 1)]  # fmt: skip
        for path in [self.root, *self.root.rglob("*")]:
            _hand_over(path)

    def start(self) -> Self:
        self.etcd.start()
        first, *others = self.nodes
        first.start()
        self.wait_for(lambda: self.leader_name() == first.name, 90, "node1 to bootstrap")
        for node in others:
            node.start()
        self.wait_healthy(timeout=120)
        return self

    def url(self, dbname: str = "postgres") -> str:
        """Every node, in the libpq multi-host form; libpq keeps the first that takes
        writes."""
        hosts = ",".join(f"127.0.0.1:{node.pg_port}" for node in self.nodes)
        return f"postgresql://postgres@{hosts}/{dbname}?target_session_attrs=read-write"

    def create_database(self, name: str) -> str:
        with psycopg.connect(self.url(), autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    # -- looking -------------------------------------------------------------

    def members(self) -> list[Member]:
        """The cluster as any node's Patroni that answers sees it (``[]`` if none does)."""
        for node in self.nodes:
            if not node.patroni_alive:
                continue
            try:
                found = httpx.get(f"{node.api_url}/cluster", timeout=1).json()
            except (httpx.HTTPError, ValueError):
                continue
            return [
                Member(m["name"], m["role"], m["state"], m.get("timeline"))
                for m in found.get("members", [])
            ]
        return []

    def leader(self) -> PatroniNode:
        name = self.leader_name()
        assert name is not None, "the cluster has no leader"
        return self.node(name)

    def node(self, name: str) -> PatroniNode:
        return next(node for node in self.nodes if node.name == name)

    def replication(self) -> list[tuple[str, str, str]]:
        """``(application_name, state, sync_state)`` of each standby, from the primary."""
        with psycopg.connect(self.leader().url(), autocommit=True, connect_timeout=2) as primary:
            rows = primary.execute(
                "SELECT application_name, state, sync_state FROM pg_stat_replication "
                "ORDER BY application_name"
            ).fetchall()
        return [(str(name), str(state), str(sync)) for name, state, sync in rows]

    def wait_healthy(self, timeout: float = 90) -> None:
        """Until one leader runs and every other node streams from it, one of them
        synchronously."""

        def healthy() -> bool:
            try:
                leader = self.leader()
                standbys = self.replication()
            except (AssertionError, psycopg.Error):
                return False
            # By name: a replica's pg_basebackup streams too while it is being cloned.
            others = {node.name for node in self.nodes} - {leader.name}
            streaming = {name: sync for name, state, sync in standbys if state == "streaming"}
            in_sync_key = {m.name for m in self.members() if m.role == "sync_standby"}
            return others <= streaming.keys() and any(
                streaming[name] == "sync" for name in others & in_sync_key
            )

        self.wait_for(healthy, timeout, "every node streaming, one synchronously")

    def wait_for_new_leader(self, old: PatroniNode, timeout: float = 60) -> PatroniNode:
        self.wait_for(lambda: self.leader_name() not in (None, old.name), timeout, "a new leader")
        return self.leader()

    def heal(self, timeout: float = 120) -> None:
        """Restart every Patroni that was killed (its node rejoins as a replica,
        rewound if it diverged) and wait until the cluster is whole again."""
        for node in self.nodes:
            if not node.patroni_alive:
                node.stop()
                node.start()
        self.wait_healthy(timeout)

    def wait_for(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        """Until ``condition``; fails with every node's log when it does not come, or at
        once when a Patroni this cluster did not kill has exited."""
        deadline = time.monotonic() + timeout
        while not condition():
            exited = [node.name for node in self.nodes if node.exited]
            if exited or time.monotonic() > deadline:
                problem = f"Patroni exited on {exited}" if exited else f"waited {timeout:.0f} s"
                raise AssertionError(f"{problem} for {what}:\n{self.log_tails()}")
            time.sleep(0.2)

    def log_tails(self) -> str:
        return "\n".join(node.log_tail() for node in self.nodes)

    def leader_name(self) -> str | None:
        leaders = [m for m in self.members() if m.role == "leader" and m.state == "running"]
        return leaders[0].name if leaders else None

    # -- lifetime ------------------------------------------------------------

    def destroy(self) -> None:
        for node in self.nodes:
            node.stop()
        self.etcd.destroy()
        shutil.rmtree(self.root, ignore_errors=True)


def _node_config(node: PatroniNode, etcd: TemporaryEtcd) -> dict[str, Any]:
    loopback = "127.0.0.1/32"
    return {
        "scope": SCOPE,
        "namespace": "/coreline/",
        "name": node.name,
        "log": {"level": "INFO"},
        "restapi": {
            "listen": f"127.0.0.1:{node.api_port}",
            "connect_address": f"127.0.0.1:{node.api_port}",
        },
        "etcd3": {"hosts": etcd.address},
        "bootstrap": {
            "dcs": {
                "ttl": TTL_S,
                "loop_wait": LOOP_WAIT_S,
                "retry_timeout": RETRY_TIMEOUT_S,
                "maximum_lag_on_failover": 1024 * 1024,
                "primary_start_timeout": 0,
                "synchronous_mode": True,
                "synchronous_mode_strict": SYNCHRONOUS_MODE_STRICT,
                "postgresql": {
                    "use_pg_rewind": True,
                    "use_slots": True,
                    "parameters": {
                        "max_connections": 200,
                        "max_wal_senders": 10,
                        "max_replication_slots": 10,
                        "wal_keep_size": "256MB",
                        "wal_log_hints": "on",
                        "hot_standby": "on",
                    },
                },
            },
            "initdb": [{"encoding": "UTF8"}, {"locale": "C"}],
        },
        "postgresql": {
            "listen": f"127.0.0.1:{node.pg_port}",
            "connect_address": f"127.0.0.1:{node.pg_port}",
            "data_dir": str(node.data_dir),
            "bin_dir": str(POSTGRES_BIN),
            "pgpass": str(node.root / "pgpass"),
            "authentication": {
                "superuser": {"username": "postgres", "password": "coreline"},
                "replication": {"username": "replicator", "password": "coreline"},
                "rewind": {"username": "postgres", "password": "coreline"},
            },
            "pg_hba": [
                "local all all trust",
                f"host all all {loopback} trust",
                f"host replication replicator {loopback} trust",
            ],
            "parameters": {
                "unix_socket_directories": str(node.root),
                "shared_buffers": "64MB",
                # Tests prove failover logic, not disks: a killed process loses nothing
                # the kernel already has, so fsync is not needed for what they kill.
                "fsync": "off",
            },
        },
        "tags": {"nofailover": False, "noloadbalance": False, "clonefrom": False},
    }


def _as_postgres() -> dict[str, Any]:
    """``Popen`` arguments that run the child as ``postgres`` when we are root."""
    if os.geteuid() != 0:
        return {}
    account = pwd.getpwnam("postgres")
    return {
        "user": account.pw_uid,
        "group": account.pw_gid,
        "extra_groups": [],
        "env": {**os.environ, "HOME": account.pw_dir, "USER": "postgres"},
    }


def _hand_over(path: Path) -> None:
    """Let Patroni, running as ``postgres`` when we are root, own ``path``."""
    if os.geteuid() == 0:
        account = pwd.getpwnam("postgres")
        os.chown(path, account.pw_uid, account.pw_gid)


def _wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout:.0f} s for {what}")
        time.sleep(0.1)
