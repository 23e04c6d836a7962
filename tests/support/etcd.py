"""A real, throwaway single-member etcd on loopback: the consensus store a Patroni
cluster keeps its leader lock in."""

import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import IO, Self

import httpx

from tests.support.postgres import free_port
from tests.support.scratch_server import ScratchServer


def find_etcd() -> str:
    found = shutil.which("etcd") or shutil.which("etcd", path="/usr/bin:/usr/local/bin")
    if not found:
        raise RuntimeError("etcd not found: apt-get install etcd-server")
    return found


class TemporaryEtcd(ScratchServer):
    """One etcd member (v3 API) with its data in a temporary directory."""

    def __init__(self) -> None:
        self._binary = find_etcd()
        self.root = Path(tempfile.mkdtemp(prefix="coreline-etcd-"))
        self.client_port = free_port()
        self.peer_port = free_port()
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def address(self) -> str:
        """``host:port`` of the client API, as Patroni's ``etcd3.hosts`` wants it."""
        return f"127.0.0.1:{self.client_port}"

    def start(self) -> Self:
        client = f"http://{self.address}"
        peer = f"http://127.0.0.1:{self.peer_port}"
        self._log = (self.root / "etcd.log").open("ab")
        self._process = subprocess.Popen(
            [
                self._binary, "--name", "coreline-etcd", "--data-dir", str(self.root / "data"),
                "--listen-client-urls", client, "--advertise-client-urls", client,
                "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                "--initial-cluster", f"coreline-etcd={peer}",
                "--initial-cluster-state", "new",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"etcd exited: {self.log_tail()}")
            try:
                if httpx.get(f"{client}/health", timeout=1).json().get("health") == "true":
                    return self
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.1)
        raise RuntimeError(f"etcd did not become healthy: {self.log_tail()}")

    def log_tail(self, characters: int = 3000) -> str:
        path = self.root / "etcd.log"
        return path.read_text(errors="replace")[-characters:] if path.exists() else ""

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
