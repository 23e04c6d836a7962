"""The demo: broker, gateway, projector (with alert engine and notifier), API with
dashboard, and a simulated fleet of three clinics, on one SQLite file.

The platform's processes run as they would in production, each its own ``coreline``
child process (in this process group, so Ctrl-C reaches them all); the fleet, the
clinics' webhook receiver and the summary run here.
"""

import os
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final, TypeVar

from rich.console import Console
from rich.live import Live
from sqlalchemy import Engine

from edge_agent.outbox import Durability, Outbox
from schemas.config_events import ConfigLayer, LayerSettings
from schemas.device_config import InterlockMode
from services.api import Role, commands, create_token
from services.api.people import SecretBox
from services.delivery import WebhookRules, create_webhook
from services.demo.accounts import create_demo_accounts, print_accounts
from services.demo.broker import embedded_broker
from services.demo.ports import free_port, port_in_use, wait_for_gateway, wait_for_port
from services.demo.summary import line, render, snapshot
from services.demo.webhook_sink import WebhookSink
from services.egress import EgressGate, parse_allow_list
from services.eventstore import EventStore, open_event_store, upgrade_schema
from services.projections.read_store import ReadModelStore
from simulation import (
    FleetPlan,
    FleetSimulation,
    SimulatorProfile,
    fleet_device_ids,
    simulated_key,
)
from transport import BrokerAddress

T = TypeVar("T")
LIVELY: Final = SimulatorProfile(
    faults_per_punching_hour=0.6, mean_idle_gap_s=900, min_idle_gap_s=120
)
"""Busier than the default clinic: in a few accelerated minutes, every kind of alert."""


DEMO_EGRESS_ALLOW: Final = "127.0.0.1/32"
"""The demo's webhook receiver runs on this machine."""


@dataclass(frozen=True, slots=True)
class DemoOptions:
    duration_s: float | None
    devices: int = 24
    clinics: int = 3
    speed: float = 240.0
    seed: int = 1
    host: str = "127.0.0.1"
    port: int = 8000
    data_dir: Path | None = None
    broker: str = "auto"


def run_demo(options: DemoOptions, console: Console, stop: threading.Event) -> int:
    if port_in_use(options.port):
        console.print(f"[red]port {options.port} is in use: pass --port with a free one[/red]")
        return 2
    with ExitStack() as stack:
        data_dir = options.data_dir or Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="coreline-demo-"))
        )
        data_dir.mkdir(parents=True, exist_ok=True)
        database_url = f"sqlite:///{data_dir / 'coreline.db'}"
        upgrade_schema(database_url)
        mqtt_port = free_port()
        broker_name = stack.enter_context(embedded_broker(mqtt_port, data_dir, options.broker))
        mqtt_url = f"mqtt://127.0.0.1:{mqtt_port}"
        master_key = secrets.token_hex(32)
        sink = WebhookSink(free_port())
        sink.start()
        stack.callback(sink.stop)
        clinics = [f"clinic-{number}" for number in range(1, options.clinics + 1)]
        devices = fleet_device_ids(options.devices)
        tokens = _seed(database_url, clinics, devices, sink, master_key.encode(), options.seed)
        # The key that seals the demo accounts' TOTP secrets, given to the API too.
        secret_key = secrets.token_hex(32)
        accounts = _with_engine(
            database_url,
            lambda engine: create_demo_accounts(engine, SecretBox(secret_key.encode()), clinics),
        )
        environment = {
            **{key: value for key, value in os.environ.items() if not key.startswith("CORELINE_")},
            "CORELINE_DATABASE_URL": database_url,
            "CORELINE_MQTT_URL": mqtt_url,
            "CORELINE_WEBHOOK_MASTER_KEY": master_key,
            "CORELINE_EGRESS_ALLOW": DEMO_EGRESS_ALLOW,
            "CORELINE_SECRET_KEY": secret_key,
        }
        gateway_metrics = free_port()
        children = stack.enter_context(_children(data_dir, environment, options, gateway_metrics))
        wait_for_port(options.port, 60.0)
        # Devices start once the gateway has subscribed: a broker keeps messages only
        # for sessions it knows, and the gateway's first session starts then.
        wait_for_gateway(gateway_metrics, 60.0, children["gateway"])
        url = f"http://{options.host}:{options.port}/"
        console.print(
            f"[bold]Coreline demo[/bold]: {len(devices)} handpieces in {len(clinics)} clinics, "
            f"{options.speed:g}× time, broker {broker_name}, data in {data_dir}"
        )
        console.print(f"dashboard: {url}  (API docs: {url}api/v1/docs)")
        print_accounts(console, accounts)
        for name, token in tokens.items():
            console.print(f"token {name}: {token}", soft_wrap=True, highlight=False)
        outbox = Outbox(data_dir / "outbox.db", durability=Durability.NORMAL)
        stack.callback(outbox.close)
        plan = FleetPlan(devices, seed=options.seed, speed=options.speed, profile=LIVELY)
        fleet = FleetSimulation(plan, outbox, BrokerAddress.parse(mqtt_url))
        fleet_thread = threading.Thread(
            target=fleet.run, args=(stop, None), name="fleet", daemon=True
        )
        fleet_thread.start()
        failed = _watch(database_url, console, stop, options, children, fleet)
        stop.set()
        fleet_thread.join(timeout=30)
    return 1 if failed else 0


def _seed(
    database_url: str,
    clinics: list[str],
    devices: list[str],
    sink: WebhookSink,
    key: bytes,
    fleet_seed: int,
) -> dict[str, str]:
    """Tokens for each role, the fleet registered and shared out among the clinics
    (as the fleet team would through the API) with each handpiece's seal key, so
    the whole fleet is sealed from its first batch, and a webhook per clinic."""
    read_models = ReadModelStore(database_url)
    store = open_event_store(database_url)
    try:
        engine = read_models.engine
        # The demo's receiver listens on loopback, which only an allow-list admits.
        rules = WebhookRules(EgressGate(parse_allow_list(DEMO_EGRESS_ALLOW)))
        tokens = {
            "manufacturer": create_token(engine, Role.MANUFACTURER, None, "demo fleet team")[1]
        }
        for clinic in clinics:
            tokens[clinic] = create_token(engine, Role.CLINIC, clinic, f"{clinic} staff")[1]
            path = f"/hooks/{clinic}"
            _, sink.secrets[path] = create_webhook(engine, key, clinic, sink.url + path, rules)
        tokens["auditor"] = create_token(engine, Role.AUDITOR, None, "demo auditor")[1]
        for index, device_id in enumerate(devices):
            commands.register_device(store, device_id, "CX-2", "demo fleet team")
            commands.assign_device(
                store, device_id, clinics[index % len(clinics)], "demo fleet team"
            )
            public_key = simulated_key(fleet_seed, device_id).public_text
            commands.register_key(store, device_id, public_key, "demo fleet team")
        _seed_interlocks(store, clinics)
    finally:
        store.close()
        read_models.close()
    return tokens


def demo_recalled_lot(now: datetime) -> str:
    """A lot the simulated fleet draws from now on (cartridges are made 20 to 150 days
    before they are installed, lots named by month and line): about one install in
    fifteen is of it, so the demo shows handpieces refusing recalled cartridges."""
    return f"L{now - timedelta(days=60):%y%m}B"


def _seed_interlocks(store: EventStore, clinics: list[str]) -> None:
    """The fleet layer recalls a lot and the first clinic blocks cartridges past their
    rating (the others only warn): the handpieces' interlocks have work to show."""
    from services.api.config_changes import change_layer  # noqa: PLC0415

    recall = LayerSettings(recalled_lots=(demo_recalled_lot(datetime.now(UTC)),))
    change_layer(store, ConfigLayer.FLEET, None, recall, "demo fleet team")
    blocking = LayerSettings(cartridge_life_mode=InterlockMode.BLOCK)
    change_layer(store, ConfigLayer.CLINIC, clinics[0], blocking, f"{clinics[0]} staff")


def _with_engine(database_url: str, use: "Callable[[Engine], T]") -> T:
    read_models = ReadModelStore(database_url)
    try:
        return use(read_models.engine)
    finally:
        read_models.close()


@contextmanager
def _children(
    data_dir: Path, environment: dict[str, str], options: DemoOptions, gateway_metrics: int
) -> Iterator[dict[str, subprocess.Popen[bytes]]]:
    commands_by_name = {
        "gateway": ["gateway", "--metrics-port", str(gateway_metrics)],
        "projector": ["projector", "--metrics-port", "0"],
        "api": [
            "api",
            "--host",
            options.host,
            "--port",
            str(options.port),
            "--log-level",
            "warning",
        ],
    }
    started: dict[str, subprocess.Popen[bytes]] = {}
    logs = []
    try:
        for name, arguments in commands_by_name.items():
            log = (data_dir / f"{name}.log").open("wb")
            logs.append(log)
            started[name] = subprocess.Popen(  # noqa: S603 - this very program
                [sys.executable, "-m", "services", *arguments],
                env=environment, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        yield started
    finally:
        for process in started.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in started.values():
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
        for log in logs:
            log.close()


def _watch(
    database_url: str,
    console: Console,
    stop: threading.Event,
    options: DemoOptions,
    children: dict[str, subprocess.Popen[bytes]],
    fleet: FleetSimulation,
) -> bool:
    """Show the summary until ``stop`` or the duration; whether a child died."""
    read_models = ReadModelStore(database_url)
    started = time.monotonic()
    last_line = 0.0

    def elapsed() -> float:
        return time.monotonic() - started

    def simulated() -> str:
        moment = fleet.start.timestamp() + elapsed() * options.speed
        return time.strftime("%Y-%m-%d %H:%M", time.gmtime(moment))

    failed = False
    try:
        with Live(console=console, auto_refresh=False, transient=False) as live:
            while not stop.wait(1.0):
                shot = snapshot(read_models.engine)
                live.update(render(shot, elapsed(), simulated()), refresh=True)
                if not console.is_terminal and elapsed() - last_line >= 10:
                    console.print(line(shot, elapsed()), highlight=False)
                    last_line = elapsed()
                dead = [name for name, process in children.items() if process.poll() is not None]
                if dead:
                    console.print(
                        f"[red]{', '.join(dead)} stopped: see its log in the data directory[/red]"
                    )
                    failed = True
                    break
                if options.duration_s is not None and elapsed() >= options.duration_s:
                    break
        console.line()  # a redirected Live leaves its last frame unterminated
        console.print(line(snapshot(read_models.engine), elapsed()), highlight=False)
    finally:
        read_models.close()
    return failed
