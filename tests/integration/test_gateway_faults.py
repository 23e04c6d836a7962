"""End to end under faults: simulated agents → Mosquitto → gateway → PostgreSQL,
while the gateway is killed, PostgreSQL crashes and the broker restarts.  Afterwards
every event each agent recorded is stored exactly once, with its chain intact."""

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_agent.outbox import Outbox
from schemas.chain import ChainLink, ChainStatus, verify_chain
from services.eventstore import Cursor, EventStore, open_event_store, upgrade_schema
from tests.support.mosquitto import TemporaryMosquitto
from tests.support.postgres import TemporaryPostgres

pytestmark = pytest.mark.slow


def _coreline(*args: str, log: Path, **settings: str) -> subprocess.Popen[bytes]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("CORELINE_")}
    env |= {f"CORELINE_{name.upper()}": value for name, value in settings.items()}
    with log.open("ab") as output:
        return subprocess.Popen(
            [sys.executable, "-m", "services", *args], env=env, stdout=output, stderr=output
        )


class _Gateway:
    def __init__(
        self, url: str, broker: TemporaryMosquitto, log: Path, *extra: str, heal: bool = True
    ) -> None:
        self._args = ("gateway", "--database-url", url, "--mqtt-url", broker.url,
                      "--metrics-port", "0", *extra)  # fmt: skip
        self._log = log
        # Without healing, a lost message stays lost: the gap is never asked for again.
        self._settings = {} if heal else {"gateway_gap_grace_s": "86400"}
        self.process = _coreline(*self._args, log=log, **self._settings)
        self.wait_subscribed()

    def wait_subscribed(self) -> None:
        """Until the gateway's session holds its subscriptions, the broker keeps no
        messages for it (afterwards it keeps them across any crash)."""
        deadline = time.monotonic() + 30
        while "subscribed" not in self._log.read_text(errors="replace"):
            assert time.monotonic() < deadline, self._log.read_text()[-2000:]
            time.sleep(0.05)

    def crash(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def restart(self) -> None:
        self.process = _coreline(*self._args, log=self._log, **self._settings)

    def crash_and_restart(self) -> None:
        self.crash()
        self.restart()

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=30)


@pytest.fixture
def postgres() -> Iterator[TemporaryPostgres]:
    # Durable: this test crashes the server and counts on what it acknowledged.
    with TemporaryPostgres(durable=True) as server:
        yield server


def _outbox_heads(path: Path, devices: int) -> dict[str, int]:
    outbox = Outbox(path)
    heads = {f"HP-{n:06d}": outbox.head(f"HP-{n:06d}")[0] for n in range(1, devices + 1)}
    assert outbox.stats().unsent == 0, "the agents could not deliver everything"
    outbox.close()
    return heads


def _assert_stored_exactly_once(store: EventStore, heads: dict[str, int]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if all(len(store.read_stream(d)) == head for d, head in heads.items()):
            break
        time.sleep(0.2)
    for device, head in heads.items():
        stored = store.read_stream(device)
        assert [event.seq for event in stored] == list(range(1, head + 1)), device
        links = (ChainLink(e.seq, e.body, e.hash, str(e.event_id)) for e in stored)
        assert verify_chain(links).status is ChainStatus.VERIFIED, device
    seen: list[tuple[str, int]] = []
    cursor = Cursor.START
    while batch := store.read(cursor, limit=5000):
        seen += [(event.stream_id, event.seq) for event in batch]
        cursor = batch[-1].cursor
    assert len(seen) == len(set(seen)) == sum(heads.values())


def test_crashes_and_restarts_under_load_lose_and_double_nothing(
    postgres: TemporaryPostgres, tmp_path: Path
) -> None:
    """Gateway, database and broker crashes under load leave every event stored exactly once."""
    url = postgres.create_database("coreline")
    upgrade_schema(url)
    devices = 30
    with TemporaryMosquitto() as broker:
        # Resend requests would heal a loss and hide it: this test proves there is none.
        gateway = _Gateway(url, broker, tmp_path / "gateway.log", heal=False)
        fleet = _coreline(
            "simulate", "--devices", str(devices), "--seed", "5", "--speed", "1200",
            "--duration", "24", "--mqtt-url", broker.url, "--outbox", str(tmp_path / "fleet.db"),
            log=tmp_path / "fleet.log",
        )  # fmt: skip
        try:
            time.sleep(4)
            gateway.crash_and_restart()
            time.sleep(3)
            gateway.crash_and_restart()
            time.sleep(2)
            postgres.stop("immediate")  # a database crash, mid-commit for all we know
            time.sleep(2)  # the gateway holds what arrives, acknowledging nothing...
            gateway.crash()  # ...so its crash now must not lose any of it
            postgres.start()
            gateway.restart()
            time.sleep(2)
            broker.stop()
            time.sleep(1)
            broker.start()
            time.sleep(2)
            gateway.crash_and_restart()
            assert fleet.wait(timeout=120) == 0, (tmp_path / "fleet.log").read_text()[-2000:]
            heads = _outbox_heads(tmp_path / "fleet.db", devices)
            assert sum(heads.values()) > 1000, "too little load to prove anything"
            store = open_event_store(url)
            _assert_stored_exactly_once(store, heads)
            store.close()
        finally:
            gateway.stop()
            if fleet.poll() is None:
                fleet.kill()


def test_two_gateways_on_one_shared_subscription(
    postgres: TemporaryPostgres, tmp_path: Path
) -> None:
    """Two gateways split the load; a reader tailing the store meanwhile sees every
    event exactly once, although the two commit concurrently."""
    url = postgres.create_database("coreline")
    upgrade_schema(url)
    devices = 40
    tailed: list[tuple[str, int]] = []
    done = threading.Event()

    def tail() -> None:
        store, cursor = open_event_store(url), Cursor.START
        while not done.is_set() or (batch := store.read(cursor, limit=2000)):
            batch = store.read(cursor, limit=2000)
            tailed.extend((event.stream_id, event.seq) for event in batch)
            if batch:
                cursor = batch[-1].cursor
            else:
                time.sleep(0.02)
        store.close()

    with TemporaryMosquitto() as broker:
        shared = ("--share-group", "coreline-gateway")
        gateways = [
            _Gateway(url, broker, tmp_path / f"gateway-{n}.log", *shared, "--client-id", f"gw-{n}")
            for n in (1, 2)
        ]
        reader = threading.Thread(target=tail)
        reader.start()
        fleet = _coreline(
            "simulate", "--devices", str(devices), "--seed", "9", "--speed", "1200",
            "--duration", "12", "--mqtt-url", broker.url, "--outbox", str(tmp_path / "fleet.db"),
            log=tmp_path / "fleet.log",
        )  # fmt: skip
        try:
            assert fleet.wait(timeout=120) == 0, (tmp_path / "fleet.log").read_text()[-2000:]
            heads = _outbox_heads(tmp_path / "fleet.db", devices)
            store = open_event_store(url)
            _assert_stored_exactly_once(store, heads)
            store.close()
        finally:
            for gateway in gateways:
                gateway.stop()
            done.set()
            reader.join(timeout=30)
    assert len(tailed) == len(set(tailed)) == sum(heads.values())
    logs = [(tmp_path / f"gateway-{n}.log").read_text() for n in (1, 2)]
    assert all("connected" in log for log in logs)
