"""End to end under faults: simulated agents → Mosquitto → gateway → PostgreSQL,
while the gateway is killed, PostgreSQL crashes and the broker restarts.  Afterwards
every event each agent recorded is stored exactly once, with its chain intact."""

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_agent.outbox import Outbox
from schemas.chain import ChainLink, ChainStatus, verify_chain
from services.eventstore import Cursor, EventStore, open_event_store, upgrade_schema
from tests.support.mosquitto import TemporaryMosquitto
from tests.support.platform_processes import GatewayProcess, coreline
from tests.support.postgres import TemporaryPostgres

pytestmark = pytest.mark.slow


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
        gateway = GatewayProcess(url, broker, tmp_path / "gateway.log", heal=False)
        fleet = coreline(
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
            GatewayProcess(
                url, broker, tmp_path / f"gateway-{n}.log", *shared, "--client-id", f"gw-{n}"
            )
            for n in (1, 2)
        ]
        reader = threading.Thread(target=tail)
        reader.start()
        fleet = coreline(
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
