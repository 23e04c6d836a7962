"""HAProxy on loopback in front of a Patroni cluster: one port that leads to the
primary, chosen by Patroni's own REST health check (``/primary`` answers 200 only on
the node that holds the leader lock and runs as primary)."""

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import IO, Self

from tests.support.patroni import PatroniCluster
from tests.support.postgres import free_port
from tests.support.scratch_server import ScratchServer

CHECK_EVERY_MS = 500
FALL = 2
"""Failed checks before a node is marked down (and its sessions cut)."""


def find_haproxy() -> str:
    found = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin:/usr/local/sbin")
    if not found:
        raise RuntimeError("haproxy not found: apt-get install haproxy")
    return found


class TemporaryHaproxy(ScratchServer):
    """``shutdown-sessions`` on mark-down is what fences a primary whose Patroni died:
    its PostgreSQL still runs and still takes connections, but no client reaches it
    any more, and the sessions it had are cut, so no one waits on it for ever."""

    def __init__(self, cluster: PatroniCluster) -> None:
        self._binary = find_haproxy()
        self.root = Path(tempfile.mkdtemp(prefix="coreline-haproxy-"))
        self.port = free_port()
        servers = "\n".join(
            f"    server {node.name} 127.0.0.1:{node.pg_port} check port {node.api_port}"
            for node in cluster.nodes
        )
        (self.root / "haproxy.cfg").write_text(
            "global\n"
            "    maxconn 2000\n"
            f"    stats socket {self.root / 'stats.sock'} mode 600 level operator\n"
            "defaults\n"
            "    mode tcp\n"
            "    timeout connect 2s\n"
            "    timeout client 30m\n"
            "    timeout server 30m\n"
            "    timeout check 1s\n"
            "listen primary\n"
            f"    bind 127.0.0.1:{self.port}\n"
            "    option httpchk OPTIONS /primary\n"
            "    http-check expect status 200\n"
            f"    default-server inter {CHECK_EVERY_MS}ms fall {FALL} rise 1 "
            "on-marked-down shutdown-sessions\n"
            f"{servers}\n"
        )
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def start(self) -> Self:
        self._log = (self.root / "haproxy.log").open("ab")
        self._process = subprocess.Popen(
            [self._binary, "-db", "-f", str(self.root / "haproxy.cfg")],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"haproxy exited: {(self.root / 'haproxy.log').read_text()}")
            try:
                # Servers count as up until checks say otherwise: wait for the verdicts.
                if len(self.servers_up()) == 1:
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"haproxy did not single out a primary on {self.port}")

    def servers_up(self) -> list[str]:
        """The nodes HAProxy would send a new connection to now."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as stats:
            stats.settimeout(2)
            stats.connect(str(self.root / "stats.sock"))
            stats.sendall(b"show stat\n")
            received = b""
            while chunk := stats.recv(65536):
                received += chunk
        rows = [line.split(",") for line in received.decode().splitlines()[1:] if line]
        # name, then the proxy's columns: svname is the second and status the eighteenth.
        return [row[1] for row in rows if len(row) > 17 and row[0] == "primary"
                and row[1] not in ("FRONTEND", "BACKEND") and row[17] == "UP"]  # fmt: skip

    def destroy(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        if self._log is not None:
            self._log.close()
        shutil.rmtree(self.root, ignore_errors=True)
