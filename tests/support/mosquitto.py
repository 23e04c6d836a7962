"""A real Mosquitto broker on loopback, for integration tests and benchmarks."""

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import IO, Self

from tests.support.postgres import free_port
from tests.support.scratch_server import ScratchServer


def find_mosquitto() -> str:
    found = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/usr/local/sbin")
    if not found:
        raise RuntimeError("mosquitto not found: apt-get install mosquitto")
    return found


class TemporaryMosquitto(ScratchServer):
    """Mosquitto with persistence in a temporary directory, restartable on the same
    port (so clients reconnect to the "same" broker and queued messages survive)."""

    def __init__(
        self, extra_config: str = "", *, allow_anonymous: bool = True, persistence: bool = True
    ) -> None:
        self._binary = find_mosquitto()
        self.root = Path(tempfile.mkdtemp(prefix="coreline-mqtt-"))
        self.hand_over(self.root)
        self.port = free_port()
        self.extra_config = extra_config
        """Appended to the configuration at each start (extra listeners, auth files)."""
        self._allow_anonymous = allow_anonymous
        self.persistence = persistence
        """Whether sessions and queued messages survive a restart (changeable between runs)."""
        self._config = self.root / "mosquitto.conf"
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    @staticmethod
    def hand_over(path: Path) -> None:
        """Let the broker read ``path``: started as root, mosquitto drops to its own user."""
        if os.geteuid() == 0:
            account = pwd.getpwnam("mosquitto")
            os.chown(path, account.pw_uid, account.pw_gid)

    def start(self) -> Self:
        self._config.write_text(
            f"listener {self.port} 127.0.0.1\n"
            f"allow_anonymous {'true' if self._allow_anonymous else 'false'}\n"
            f"persistence {'true' if self.persistence else 'false'}\n"
            f"persistence_location {self.root}/\n"
            "autosave_interval 1\n"
            "max_queued_messages 100000\n"
            "max_inflight_messages 1000\n"
            f"{self.extra_config}"
        )
        self._log = (self.root / "mosquitto.log").open("ab")
        self._process = subprocess.Popen(
            [self._binary, "-c", str(self._config)], stdout=self._log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {self.log_tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"mosquitto did not listen on {self.port}: {self.log_tail()}")

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)  # saves persistence on the way out
            self._process.wait(timeout=15)
        self._process = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def freeze(self) -> None:
        """SIGSTOP: connections stay open, nothing is read or acknowledged."""
        assert self._process is not None
        self._process.send_signal(signal.SIGSTOP)

    def crash(self) -> None:
        """SIGKILL: whatever the broker had not yet persisted is gone."""
        if self._process is not None:
            self._process.kill()
            self._process.wait(timeout=15)
        self.stop()

    def log_tail(self) -> str:
        path = self.root / "mosquitto.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
