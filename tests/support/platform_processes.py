"""Coreline's own processes, started through the real command line for fault tests."""

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.mosquitto import TemporaryMosquitto


def coreline(*args: str, log: Path, **settings: str) -> subprocess.Popen[bytes]:
    """``coreline ARGS`` with ``CORELINE_<NAME>`` set from ``settings`` (and no other)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("CORELINE_")}
    env |= {f"CORELINE_{name.upper()}": value for name, value in settings.items()}
    with log.open("ab") as output:
        return subprocess.Popen(
            [sys.executable, "-m", "services", *args], env=env, stdout=output, stderr=output
        )


@contextmanager
def serving_api(
    port: int, log: Path, *args: str, **settings: str
) -> Iterator[subprocess.Popen[bytes]]:
    """``coreline api`` on 127.0.0.1:``port`` (more ``args`` after), ``CORELINE_<NAME>``
    from ``settings``; yielded once it listens, stopped when the block ends."""
    server = coreline("api", "--host", "127.0.0.1", "--port", str(port), *args, log=log, **settings)
    try:
        wait_for_port(server, port, log)
        yield server
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def wait_for_port(
    process: subprocess.Popen[bytes], port: int, log: Path, within_s: float = 30.0
) -> None:
    """Until something listens on 127.0.0.1:``port``; fails naming the log if
    ``process`` exits first or nothing listens within ``within_s``."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"exited with {process.returncode}:\n{log.read_text()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        except OSError:
            time.sleep(0.05)
        else:
            return
    raise AssertionError(f"nothing listened on {port} within {within_s} s:\n{log.read_text()}")


def python_module(module: str, *args: str, log: Path) -> subprocess.Popen[bytes]:
    """``python -m MODULE ARGS`` (a test support process), its output in ``log``."""
    with log.open("ab") as output:
        return subprocess.Popen([sys.executable, "-m", module, *args], stdout=output, stderr=output)


class GatewayProcess:
    """``coreline gateway`` as a child process that can be killed and restarted."""

    def __init__(
        self,
        url: str,
        broker: TemporaryMosquitto,
        log: Path,
        *extra: str,
        heal: bool = True,
        **settings: str,
    ) -> None:
        self._args = ("gateway", "--database-url", url, "--mqtt-url", broker.url,
                      "--metrics-port", "0", *extra)  # fmt: skip
        self._log = log
        # Without healing, a lost message stays lost: the gap is never asked for again.
        self._settings = settings | ({} if heal else {"gateway_gap_grace_s": "86400"})
        self.process = coreline(*self._args, log=log, **self._settings)
        self.wait_subscribed()

    def wait_subscribed(self, after: int = 0) -> None:
        """Until the gateway's session holds its subscriptions, the broker keeps no
        messages for it (afterwards it keeps them across any crash)."""
        deadline = time.monotonic() + 30
        while self._log.read_text(errors="replace").count("subscribed") <= after:
            assert time.monotonic() < deadline, self._log.read_text()[-2000:]
            time.sleep(0.05)

    def subscriptions(self) -> int:
        return self._log.read_text(errors="replace").count("subscribed")

    def crash(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def restart(self) -> None:
        self.process = coreline(*self._args, log=self._log, **self._settings)

    def crash_and_restart(self) -> None:
        self.crash()
        self.restart()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=30)
