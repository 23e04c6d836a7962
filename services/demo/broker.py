"""The demo's MQTT broker: the real Mosquitto when one is installed, else amqtt (a
Python broker, MQTT 3.1.1 only: agents and gateways fall back to it)."""

import asyncio
import logging
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from services.demo.ports import wait_for_port

log = logging.getLogger(__name__)


def find_mosquitto() -> str | None:
    return shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").is_file() else None
    )


@contextmanager
def embedded_broker(port: int, data_dir: Path, kind: str = "auto") -> Iterator[str]:
    """A broker on ``127.0.0.1:port`` for as long as the block runs; yields its name.

    ``kind``: ``auto`` (Mosquitto if installed, else amqtt), ``mosquitto`` or ``amqtt``.
    """
    mosquitto = find_mosquitto() if kind != "amqtt" else None
    if kind == "mosquitto" and mosquitto is None:
        raise RuntimeError("no mosquitto on PATH: install it, or use --broker amqtt")
    if mosquitto is not None:
        with _mosquitto(mosquitto, port, data_dir):
            yield "mosquitto"
    else:
        with _amqtt(port):
            yield "amqtt (MQTT 3.1.1)"


@contextmanager
def _mosquitto(binary: str, port: int, data_dir: Path) -> Iterator[None]:
    config = data_dir / "mosquitto.conf"
    # Loopback only and anonymous: the demo's broker is reachable from this machine alone.
    config.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        "max_queued_messages 100000\nmax_inflight_messages 1000\n"
    )
    log = (data_dir / "mosquitto.log").open("wb")
    process = subprocess.Popen(  # noqa: S603 - our own binary and config
        [binary, "-c", str(config)], stdout=log, stderr=subprocess.STDOUT, cwd=tempfile.gettempdir()
    )
    try:
        wait_for_port(port, 10.0, process)
        yield
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


@contextmanager
def _amqtt(port: int) -> Iterator[None]:
    from amqtt.broker import Broker  # noqa: PLC0415 - only where no Mosquitto exists

    config: dict[str, Any] = {
        "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},
        "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
    }
    loop = asyncio.new_event_loop()
    # Every client's first CONNECT is MQTT 5, which amqtt cannot parse: it drops the
    # connection (the client falls back to 3.1.1) and reports each as an error.
    loop.set_exception_handler(lambda _loop, context: log.debug("amqtt: %s", context))
    logging.getLogger("amqtt").setLevel(logging.CRITICAL)
    ready = threading.Event()
    broker: list[Any] = []

    def serve() -> None:
        asyncio.set_event_loop(loop)
        broker.append(Broker(config, loop=loop))
        loop.run_until_complete(broker[0].start())
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=serve, name="amqtt", daemon=True)
    thread.start()
    if not ready.wait(15):
        raise RuntimeError("the embedded amqtt broker did not start")
    wait_for_port(port, 10.0)
    try:
        yield
    finally:
        asyncio.run_coroutine_threadsafe(broker[0].shutdown(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        time.sleep(0)  # let the loop's thread finish its last callbacks
