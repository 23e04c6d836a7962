"""A real, throwaway PostgreSQL server on loopback, for tests and benchmarks."""

import contextlib
import os
import pwd
import random
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Final, Self

import psycopg

from tests.support.scratch_server import ScratchServer


def find_postgres_bin() -> Path:
    """The directory holding ``initdb`` and ``pg_ctl``: on PATH, else the newest
    ``/usr/lib/postgresql/*/bin``."""
    on_path = shutil.which("pg_ctl")
    if on_path:
        return Path(on_path).resolve().parent
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"), key=lambda path: int(path.parent.name)
    )
    if not candidates:
        raise RuntimeError("PostgreSQL server binaries not found: apt-get install postgresql")
    return candidates[-1]


# Below Linux's ephemeral range (32768-60999): a server restarted by a test must get
# its port back, and a port of that range can meanwhile be taken as the local end of
# an outgoing connection, even one of its own clients reconnecting to it (a TCP
# self-connect), so its restart would fail with "Address already in use".
_SERVER_PORTS: Final = range(20000, 32768)


def free_port() -> int:
    for port in random.sample(_SERVER_PORTS, len(_SERVER_PORTS)):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {_SERVER_PORTS}")


class TemporaryPostgres(ScratchServer):
    """``initdb`` into a temporary directory, serve on 127.0.0.1:<free port>, and remove
    everything on ``stop``.  As root, the server runs as the ``postgres`` user, since
    PostgreSQL refuses to run as root."""

    def __init__(self, *, durable: bool = False) -> None:
        self._bin = find_postgres_bin()
        self._root = Path(tempfile.mkdtemp(prefix="coreline-pg-"))
        self.data_dir = self._root / "data"
        self.port = free_port()
        self._durable = durable
        self._run_as: list[str] = []
        if os.geteuid() == 0:
            account = pwd.getpwnam("postgres")
            os.chown(self._root, account.pw_uid, account.pw_gid)
            self._run_as = ["runuser", "-u", "postgres", "--"]

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def start(self) -> Self:
        if not self.data_dir.exists():
            self._run(
                "initdb", "-D", str(self.data_dir), "-U", "postgres", "--auth=trust",
                "-E", "UTF8", "--no-sync", "--locale=C",
            )  # fmt: skip
        options = [
            f"-p {self.port}",
            "-c listen_addresses=127.0.0.1",
            f"-k {self._root}",
            "-c max_connections=200",
            "-c shared_buffers=256MB",
        ]
        if not self._durable:
            # Tests prove logic, not disks: skip fsync so the suite stays fast.
            options += ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
        self._run(
            "pg_ctl", "-D", str(self.data_dir), "-l", str(self._root / "server.log"),
            "-o", " ".join(options), "-w", "-t", "60", "start",
        )  # fmt: skip
        self._wait_ready()
        return self

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data_dir), "-m", mode, "-w", "stop")

    def destroy(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):  # already stopped
            self.stop("immediate")
        shutil.rmtree(self._root, ignore_errors=True)

    def create_database(self, name: str, template: str | None = None) -> str:
        with psycopg.connect(self.url(), autocommit=True) as connection:
            clause = f" TEMPLATE {template}" if template else ""
            connection.execute(f'CREATE DATABASE "{name}"{clause}')
        return self.url(name)

    def _run(self, program: str, *args: str) -> None:
        subprocess.run(
            [*self._run_as, str(self._bin / program), *args],
            check=True,
            capture_output=True,
            cwd=self._root,
        )

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 30
        while True:
            try:
                with psycopg.connect(self.url(), connect_timeout=2):
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
