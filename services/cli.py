"""``coreline``: one command line for every Coreline process (DESIGN §10)."""

import logging
import re
import signal
import sys
import threading
from contextlib import contextmanager
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from edge_agent.outbox import Durability, Outbox
from edge_agent.runner import run_agent
from edge_agent.settings import AgentSettings
from schemas.fields import DEVICE_ID_PATTERN
from schemas.urls import redact
from transport import ConfigurationError, SettingsT, load

if TYPE_CHECKING:
    from collections.abc import Iterator

    from sqlalchemy import Engine

    from services.api import Role
    from services.api.people import Enrolment, SecretBox
    from services.eventstore import EventStore
    from simulation import FleetProgress

# The platform's modules (database drivers, migrations, web stack) and the simulation
# are imported by the commands that use them, so `coreline agent` on a handpiece
# stays small.

app = typer.Typer(
    name="coreline",
    help="Coreline: event-sourced fleet and telemetry for dermal micro-coring handpieces.",
    no_args_is_help=True,
    add_completion=False,
)
db_app = typer.Typer(help="Manage the database schema.", no_args_is_help=True)
app.add_typer(db_app, name="db")
token_app = typer.Typer(help="Create, list and revoke API tokens.", no_args_is_help=True)
app.add_typer(token_app, name="token")
user_app = typer.Typer(
    help="People's accounts for the dashboard: create, list, disable, reset, change role.",
    no_args_is_help=True,
)
app.add_typer(user_app, name="user")
device_app = typer.Typer(
    help="Handpieces: claims, identity, certificates, seal keys, decommissioning.",
    no_args_is_help=True,
)
app.add_typer(device_app, name="device")
device_key_app = typer.Typer(
    help="Seal keys (DESIGN §4.1): generate, register, revoke.", no_args_is_help=True
)
device_app.add_typer(device_key_app, name="key")
from services.cli_config import command_app, config_app  # noqa: E402 - beside its siblings

app.add_typer(config_app, name="config")
device_app.add_typer(command_app, name="command")
import services.cli_identity as cli_identity  # noqa: E402, PLR0402 - beside its siblings; a dotted name the layer check reads

app.add_typer(cli_identity.fleet_ca_app, name="fleet-ca")
device_app.command("claim")(cli_identity.device_claim)
device_app.command("identity")(cli_identity.device_identity)
device_app.command("decommission")(cli_identity.device_decommission)
device_app.add_typer(cli_identity.device_cert_app, name="cert")
agent_app = typer.Typer(
    help="Run one handpiece's agent, fed firmware events as JSON lines on stdin (the "
    "options); or enrol it, renew its certificate, rotate its seal key (the commands).",
)
app.add_typer(agent_app, name="agent")
agent_app.command("enrol")(cli_identity.agent_enrol)
agent_app.command("renew")(cli_identity.agent_renew)
agent_app.command("rotate-seal-key")(cli_identity.agent_rotate_seal_key)
audit_app = typer.Typer(
    help="The transparency log: keys, checkpoints, rebuilds and witnessing.",
    no_args_is_help=True,
)
app.add_typer(audit_app, name="audit")

DatabaseOption = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        help="Overrides CORELINE_DATABASE_URL (sqlite:///file.db or postgresql://…).",
        show_default=False,
    ),
]
MqttOption = Annotated[
    str | None,
    typer.Option(
        "--mqtt-url",
        help="Overrides CORELINE_MQTT_URL (mqtt://user:pass@host:1883, mqtts:// for TLS).",
        show_default=False,
    ),
]
OutboxOption = Annotated[
    Path | None,
    typer.Option(
        "--outbox",
        help="Overrides CORELINE_OUTBOX_PATH (the SQLite outbox file).",
        show_default=False,
    ),
]


class LogLevel(StrEnum):
    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"
    CRITICAL = "critical"


class TokenRole(StrEnum):
    """``--role``: the API's roles (``services.api.Role``, kept out of this import)."""

    MANUFACTURER = "manufacturer"
    CLINIC = "clinic"
    AUDITOR = "auditor"


class DemoBroker(StrEnum):
    AUTO = "auto"
    MOSQUITTO = "mosquitto"
    AMQTT = "amqtt"


LogLevelOption = Annotated[
    LogLevel, typer.Option("--log-level", case_sensitive=False, help="How much to log.")
]


def _fail(command: str, error: Exception) -> typer.Exit:
    typer.echo(f"coreline {command}: {error}", err=True)
    return typer.Exit(code=2)


def _configure(
    command: str, settings_class: type[SettingsT], log_level: LogLevel, **overrides: object
) -> SettingsT:
    level = logging.getLevelNamesMapping()[log_level.upper()]
    logging.basicConfig(
        level=level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        return load(settings_class, **overrides)
    except ConfigurationError as error:
        raise _fail(command, error) from None


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    return stop


@db_app.command("upgrade")
def db_upgrade(database_url: DatabaseOption = None) -> None:
    """Create the schema, or bring it up to date; a no-op when it already is."""
    from services.eventstore import EventStoreError, upgrade_schema  # noqa: PLC0415
    from services.merkle_log import create_key_file  # noqa: PLC0415
    from services.settings import load_settings  # noqa: PLC0415

    try:
        settings = load_settings(database_url=database_url)
        upgrade_schema(settings.database_url)
    except (ConfigurationError, EventStoreError) as error:
        raise _fail("db upgrade", error) from None
    typer.echo(f"schema is up to date: {redact(settings.database_url)}")
    if create_key_file(settings.log_key_path(), settings.log_origin):
        typer.echo(f"log signing key created: {settings.log_key_path()}")
    try:
        fleet_ca = cli_identity.create_missing_fleet_ca(settings.database_url)
    except (ConfigurationError, OSError, ValueError) as error:
        raise _fail("db upgrade", error) from None
    if fleet_ca is not None:
        typer.echo(f"fleet CA created: {fleet_ca} (see docs/device-identity.md)")


@app.command()
def gateway(
    database_url: DatabaseOption = None,
    mqtt_url: MqttOption = None,
    client_id: Annotated[
        str | None, typer.Option(help="Overrides CORELINE_GATEWAY_CLIENT_ID.", show_default=False)
    ] = None,
    share_group: Annotated[
        str | None,
        typer.Option(
            help="Join this shared-subscription group (several gateways).", show_default=False
        ),
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(help="Serve /metrics here; 0: off (default 9101).", show_default=False),
    ] = None,
    log_level: LogLevelOption = LogLevel.INFO,
) -> None:
    """Ingest device events from MQTT into the event store, exactly once in effect."""
    from gateway.ingest import IngestOptions  # noqa: PLC0415
    from gateway.mqtt_source import (  # noqa: PLC0415
        DEFAULT_SESSION_EXPIRY_S,
        SHARED_SESSION_EXPIRY_S,
        SourceOptions,
    )
    from gateway.service import Gateway, GatewayOptions, tune_collector  # noqa: PLC0415
    from gateway.settings import GatewaySettings  # noqa: PLC0415
    from services.eventstore import EventStoreError, open_event_store  # noqa: PLC0415

    settings = _configure(
        "gateway", GatewaySettings, log_level, database_url=database_url, mqtt_url=mqtt_url,
        gateway_client_id=client_id, gateway_share_group=share_group,
        gateway_metrics_port=metrics_port,
    )  # fmt: skip
    try:  # fail at start-up, with a message, if the database cannot be used
        open_event_store(settings.database_url).close()
    except EventStoreError as error:
        raise _fail("gateway", error) from None
    if settings.gateway_metrics_port:
        from prometheus_client import start_http_server  # noqa: PLC0415

        start_http_server(settings.gateway_metrics_port, settings.gateway_metrics_host)
    options = GatewayOptions(
        SourceOptions(
            client_id=settings.gateway_client_id,
            share_group=settings.gateway_share_group,
            session_expiry_s=settings.gateway_session_expiry_s
            or (
                SHARED_SESSION_EXPIRY_S
                if settings.gateway_share_group
                else DEFAULT_SESSION_EXPIRY_S
            ),
        ),
        IngestOptions(
            gap_grace_s=settings.gateway_gap_grace_s,
            gap_max_attempts=settings.gateway_gap_max_attempts,
        ),
    )
    service = Gateway(lambda: open_event_store(settings.database_url), settings.broker(), options)
    typer.echo(f"gateway: {redact(settings.mqtt_url)} → {redact(settings.database_url)}", err=True)
    tune_collector()
    service.run(_stop_on_signals())


@app.command()
def verify(
    device: Annotated[
        str | None,
        typer.Option("--device", help="Verify this device's stream.", show_default=False),
    ] = None,
    session: Annotated[
        str | None,
        typer.Option(
            "--session",
            help="Verify the stream holding this session, and the session through its end.",
            show_default=False,
        ),
    ] = None,
    all_streams: Annotated[bool, typer.Option("--all", help="Verify every stored stream.")] = False,
    database_url: DatabaseOption = None,
) -> None:
    """Recompute stored hash chains from the stored bytes, naming each first bad event.

    Exits 0 when everything verified, 1 when a chain is broken or incomplete (with
    --session: when the session is), 2 when it cannot run.  Deleting a stream's
    newest events cannot be seen this way: nothing in the chain points forward.
    """
    from services.audit import VerifyUsageError, parse_target  # noqa: PLC0415
    from services.audit import verify as verify_chains  # noqa: PLC0415
    from services.eventstore import EventStoreError, open_event_store  # noqa: PLC0415
    from services.settings import load_settings  # noqa: PLC0415

    try:
        target = parse_target(device, session, all_streams)
        settings = load_settings(database_url=database_url)
        store = open_event_store(settings.database_url)
    except (VerifyUsageError, ConfigurationError, EventStoreError) as error:
        raise _fail("verify", error) from None
    try:
        verified = verify_chains(store, target, typer.echo)
    except VerifyUsageError as error:
        raise _fail("verify", error) from None
    finally:
        store.close()
    raise typer.Exit(code=0 if verified else 1)


@app.command()
def projector(
    database_url: DatabaseOption = None,
    mqtt_url: MqttOption = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(help="Serve /metrics here; 0: off (default 9102).", show_default=False),
    ] = None,
    log_level: LogLevelOption = LogLevel.INFO,
) -> None:
    """Fold events into the read models, run the alert engine, deliver alerts.

    Follows new events as they come.  Alert state changes go to each clinic's MQTT
    alert topic and webhooks (CORELINE_WEBHOOK_MASTER_KEY signs them).  Keeps the
    transparency log too, signing its checkpoints with CORELINE_LOG_KEY_FILE, and
    delivers each device's desired configuration and tracked commands.
    """
    import threading  # noqa: PLC0415

    from services.eventstore import EventStoreError, open_event_store  # noqa: PLC0415
    from services.merkle_log import MerkleLogError, create_key_file, load_signer  # noqa: PLC0415
    from services.projections.read_store import ReadModelStore  # noqa: PLC0415
    from services.projector import (  # noqa: PLC0415
        Projector,
        ProjectorSettings,
        run_log_keeper,
        run_notifier,
        tune_collector,
    )
    from services.projector.read_upgrade import bring_up_to_date  # noqa: PLC0415

    settings = _configure(
        "projector", ProjectorSettings, log_level, database_url=database_url, mqtt_url=mqtt_url,
        projector_metrics_port=metrics_port,
    )  # fmt: skip
    try:
        # A deployment needs no further command: a missing log key is made here too.
        if create_key_file(settings.log_key_path(), settings.log_origin):
            typer.echo(
                f"projector: created the log signing key {settings.log_key_path()}", err=True
            )
        load_signer(settings.log_key_path(), settings.log_origin)  # refuse early, and clearly
        events = open_event_store(settings.database_url)
    except (EventStoreError, MerkleLogError) as error:
        raise _fail("projector", error) from None
    read_models = ReadModelStore(settings.database_url)
    bring_up_to_date(
        read_models, settings.database_url, events,
        lambda line: typer.echo(f"projector: {line}", err=True),
    )  # fmt: skip
    if settings.projector_metrics_port:
        from prometheus_client import start_http_server  # noqa: PLC0415

        start_http_server(settings.projector_metrics_port, settings.projector_metrics_host)
    stop = _stop_on_signals()
    notifier = threading.Thread(
        target=run_notifier,
        args=(settings.database_url, settings.broker(), settings.master_key(), stop),
        kwargs={"email": settings.smtp()},
        name="notifier",
    )
    notifier.start()
    log_keeper = threading.Thread(
        target=run_log_keeper,
        args=(settings.database_url, settings.broker(), settings.log_key_path(),
              settings.log_origin, stop),
        name="log-keeper",
    )  # fmt: skip
    log_keeper.start()
    from services.config_delivery import run_config_delivery  # noqa: PLC0415

    config_delivery = threading.Thread(
        target=run_config_delivery, args=(settings.database_url, settings.broker(), stop),
        name="config-delivery",
    )  # fmt: skip
    config_delivery.start()
    typer.echo(
        f"projector: {redact(settings.database_url)}, alerts to {redact(settings.mqtt_url)}",
        err=True,
    )
    tune_collector()
    try:
        Projector(events, read_models).run(stop)
    finally:
        stop.set()
        notifier.join(timeout=30)
        log_keeper.join(timeout=30)
        config_delivery.join(timeout=30)
        events.close()
        read_models.close()


@app.command()
def replay(database_url: DatabaseOption = None) -> None:
    """Rebuild every read model from the event store, then swap it in."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn  # noqa: PLC0415

    from services.eventstore import EventStoreError, open_event_store  # noqa: PLC0415
    from services.projector import replay as rebuild  # noqa: PLC0415
    from services.settings import Settings  # noqa: PLC0415

    settings = _configure("replay", Settings, LogLevel.WARNING, database_url=database_url)
    try:
        events = open_event_store(settings.database_url)
    except EventStoreError as error:
        raise _fail("replay", error) from None
    total = events.count_events()
    columns = (BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, transient=True) as progress:
        task = progress.add_task("events", total=total)
        result = rebuild(settings.database_url, events, lambda n: progress.advance(task, n))
    events.close()
    typer.echo(
        f"replayed {result.events:,} events of {result.devices:,} devices in "
        f"{result.seconds:.1f} s ({result.rate:,.0f} events/s)"
    )


@agent_app.callback(invoke_without_command=True)
def agent(
    context: typer.Context,
    device_id: Annotated[
        str | None,
        typer.Option("--device-id", help="This handpiece's serial.", show_default=False),
    ] = None,
    mqtt_url: MqttOption = None,
    outbox: OutboxOption = None,
    log_level: LogLevelOption = LogLevel.INFO,
    key_file: Annotated[
        Path | None,
        typer.Option(
            "--key-file",
            help="Seal every batch with this Ed25519 private key (PEM, or the raw 32 bytes).",
            show_default=False,
        ),
    ] = None,
    identity_dir: Annotated[
        Path | None,
        typer.Option(
            "--identity-dir",
            help="The identity `coreline agent enrol` made: TLS certificate, CA and seal key "
            "from there, and the certificate renewed before it expires.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Run one handpiece's agent, fed firmware events as JSON lines on stdin.

    Each event is recorded durably, then published.  Ends when the input ends and
    everything is acknowledged, or on Ctrl-C (unsent events wait in the outbox).
    """
    if context.invoked_subcommand is not None:
        return
    identity = cli_identity.agent_identity("agent", identity_dir, device_id)
    settings = _configure(
        "agent", AgentSettings, log_level, mqtt_url=mqtt_url, outbox_path=outbox,
        **identity.mqtt_files,
    )  # fmt: skip
    device_id = device_id or identity.device_id
    if device_id is None or not _valid_device_id(device_id):
        raise _fail("agent", ConfigurationError(f"--device-id {device_id!r}: use e.g. HP-000123"))
    signer = identity.signer
    if key_file is not None:
        from seal_keys import SealKey, SealKeyError  # noqa: PLC0415

        try:
            signer = SealKey.load(key_file)
        except (OSError, SealKeyError) as error:
            raise _fail("agent", error) from None
    store = Outbox(
        settings.outbox_path,
        resend_window=settings.outbox_resend_window,
        budget_bytes=settings.outbox_budget_mb * 1024 * 1024,
    )
    stop = _stop_on_signals()
    summary = run_agent(
        device_id, store, settings.broker(), sys.stdin.buffer, stop, signer=signer,
        answers=_answer_firmware, upkeep=identity.upkeep,
    )  # fmt: skip
    store.close()
    typer.echo(
        f"{device_id}: {summary.recorded} events recorded, {summary.refused} lines refused, "
        f"{summary.unsent} unsent in {settings.outbox_path}"
        + (f"; {summary.interlocked} refused by an interlock" if summary.interlocked else ""),
        err=True,
    )


def _answer_firmware(line: bytes) -> None:
    """The interlocks' answers, one JSON line each on stdout, where the firmware reads."""
    sys.stdout.buffer.write(line)
    sys.stdout.buffer.flush()


@app.command()
def simulate(
    devices: Annotated[int, typer.Option(min=1, max=100_000, help="Handpieces.")] = 24,
    seed: Annotated[int, typer.Option(help="Same seed, same fleet, same events.")] = 1,
    speed: Annotated[
        float, typer.Option(min=0.001, help="Simulated seconds per second (60: an hour a minute).")
    ] = 1.0,
    duration: Annotated[
        float | None, typer.Option(min=0, help="Wall-clock seconds to run (default: until Ctrl-C).")
    ] = None,
    first_device: Annotated[int, typer.Option(min=1, help="Serial of the first device.")] = 1,
    mqtt_url: MqttOption = None,
    outbox: OutboxOption = None,
    log_level: LogLevelOption = LogLevel.WARNING,
) -> None:
    """Simulate a fleet of handpieces, each publishing like a real agent."""
    from simulation import FleetPlan, FleetSimulation, fleet_device_ids  # noqa: PLC0415

    settings = _configure(
        "simulate", AgentSettings, log_level, mqtt_url=mqtt_url, outbox_path=outbox
    )
    # Simulated devices need no power-loss durability: a crashed run is simply rerun.
    store = Outbox(settings.outbox_path, durability=Durability.NORMAL)
    plan = FleetPlan(fleet_device_ids(devices, first_device), seed=seed, speed=speed)
    fleet = FleetSimulation(plan, store, settings.broker())
    typer.echo(
        f"simulating {devices} handpieces (seed {seed}, {speed:g}× time) "
        f"against {redact(settings.mqtt_url)}",
        err=True,
    )
    final = fleet.run(_stop_on_signals(), duration, on_progress=_print_progress)
    store.close()
    typer.echo(
        f"stopped at simulated {final.simulated_until:%Y-%m-%d %H:%M:%S}Z: "
        f"{final.recorded} events recorded, {final.unsent} left unsent in {settings.outbox_path}",
        err=True,
    )


def _print_progress(progress: "FleetProgress") -> None:
    typer.echo(
        f"simulated until {progress.simulated_until:%Y-%m-%d %H:%M:%S}Z: "
        f"{progress.recorded} events recorded, {progress.unsent} unsent, "
        f"{progress.connected}/{progress.devices} connected",
        err=True,
    )


def _valid_device_id(device_id: str) -> bool:
    return re.fullmatch(DEVICE_ID_PATTERN, device_id) is not None


@app.command()
def api(
    host: Annotated[
        str | None,
        typer.Option(help="Overrides CORELINE_API_HOST (127.0.0.1).", show_default=False),
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="Overrides CORELINE_API_PORT (8000).", show_default=False)
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            help="Serve /metrics on this port of CORELINE_API_METRICS_HOST (127.0.0.1), "
            "apart from the API; 0: off (the default).",
            show_default=False,
        ),
    ] = None,
    database_url: DatabaseOption = None,
    mqtt_url: MqttOption = None,
    log_level: LogLevelOption = LogLevel.INFO,
) -> None:
    """Serve the HTTP API (/api/v1, OpenAPI at /api/v1/docs) and the dashboard; with
    --metrics-port, Prometheus /metrics on a listener of its own."""
    import uvicorn  # noqa: PLC0415

    from services.api import ApiSettings, create_app  # noqa: PLC0415
    from services.api.http_protocol import BoundedHttpTools  # noqa: PLC0415
    from services.eventstore import EventStoreError, open_event_store  # noqa: PLC0415

    settings = _configure(
        "api", ApiSettings, log_level, database_url=database_url, mqtt_url=mqtt_url,
        api_host=host, api_port=port, api_metrics_port=metrics_port,
    )  # fmt: skip
    try:
        open_event_store(settings.database_url).close()
    except EventStoreError as error:
        raise _fail("api", error) from None
    try:
        application = create_app(
            settings.database_url,
            lambda: open_event_store(settings.database_url),
            settings.broker(),
            settings.master_key(),
            secure_cookies=settings.api_secure_cookies,
            limits=settings.request_limits(),
            log_key=settings.log_key_place(),
        )
    except ConfigurationError as error:  # people's settings: CORELINE_SECRET_KEY, OIDC
        raise _fail("api", error) from None
    if settings.api_metrics_port:
        from prometheus_client import start_http_server  # noqa: PLC0415

        start_http_server(settings.api_metrics_port, settings.api_metrics_host)
    typer.echo(
        f"api: http://{settings.api_host}:{settings.api_port}/ on {redact(settings.database_url)}",
        err=True,
    )
    # Slow or oversized clients: a request head over 16 KiB gets 431 (BoundedHttpTools),
    # idle keep-alive connections close, and past the concurrency limit new work gets
    # 503 instead of memory; bodies are bounded by the application (services/api/limits.py).
    uvicorn.run(
        application, host=settings.api_host, port=settings.api_port,
        log_level=log_level.lower(), access_log=False, http=BoundedHttpTools,
        limit_concurrency=settings.api_limit_concurrency,
        timeout_keep_alive=settings.api_keep_alive_s,
    )  # fmt: skip


@token_app.command("create")
def token_create(
    role: Annotated[TokenRole, typer.Option(help="What the token may see and do.")],
    clinic: Annotated[
        str | None,
        typer.Option(
            "--clinic", help="The clinic the token sees (clinic: required).", show_default=False
        ),
    ] = None,
    label: Annotated[str, typer.Option(help="Who holds it (recorded on what it does).")] = "",
    expires_in: Annotated[
        str, typer.Option(help="How long it lives: 12h, 90d, 52w (at most 1825d).")
    ] = "365d",
    database_url: DatabaseOption = None,
) -> None:
    """Create a token and print it, alone on the last line.  It is shown this once."""
    from services.api import TokenError, create_token  # noqa: PLC0415
    from services.api.token_changes import cli_operator, record_token_created  # noqa: PLC0415
    from services.api.tokens import parse_lifetime  # noqa: PLC0415

    try:
        lifetime = parse_lifetime(expires_in)
    except TokenError as error:
        raise _fail("token create", error) from None
    engine = _platform_engine("token create", database_url)
    try:
        with _change_store("token create", database_url) as store:
            record, token = create_token(engine, _role(role), clinic, label, lifetime)
            record_token_created(store, engine, record, cli_operator())
    except TokenError as error:
        raise _fail("token create", error) from None
    finally:
        engine.dispose()
    scope = f"clinic {record.clinic_id}" if record.clinic_id else "the whole fleet"
    typer.echo(
        f"token {record.token_id}: {record.role.value} for {scope} ({record.label}), "
        f"expires {record.expires_at:%Y-%m-%d %H:%M}Z",
        err=True,
    )
    typer.echo("store it now: it is not shown again", err=True)
    typer.echo(token)


@token_app.command("list")
def token_list(database_url: DatabaseOption = None) -> None:
    """Every token ever created (never the tokens themselves)."""
    from services.api import list_tokens  # noqa: PLC0415

    engine = _platform_engine("token list", database_url)
    try:
        records = list_tokens(engine)
    finally:
        engine.dispose()
    now = datetime.now(UTC)
    for record in records:
        if record.revoked_at:
            state = f"revoked {record.revoked_at:%Y-%m-%d %H:%M}Z"
        elif record.expires_at is None or not record.live(now):
            state = (
                "expired" if record.expires_at is None else f"expired {record.expires_at:%Y-%m-%d}"
            )
        else:
            state = f"live to {record.expires_at:%Y-%m-%d}"
        typer.echo(
            f"{record.token_id}  {record.role.value:<12} {record.clinic_id or '*':<16} "
            f"{record.created_at:%Y-%m-%d %H:%M}Z  {state:<24} {record.label}"
        )


@token_app.command("revoke")
def token_revoke(
    token_id: Annotated[str, typer.Argument(help="The id `coreline token list` shows.")],
    database_url: DatabaseOption = None,
) -> None:
    """Refuse a token from now on."""
    from services.api import TokenError  # noqa: PLC0415
    from services.api.token_changes import cli_operator, revoke_recorded  # noqa: PLC0415

    engine = _platform_engine("token revoke", database_url)
    try:
        with _change_store("token revoke", database_url) as store:
            revoke_recorded(store, engine, token_id, cli_operator())
    except TokenError as error:
        raise _fail("token revoke", error) from None
    finally:
        engine.dispose()
    typer.echo(f"revoked {token_id}")


@device_key_app.command("generate")
def device_key_generate(
    out: Annotated[Path, typer.Option("--out", help="Write the private key here (PEM).")],
) -> None:
    """Make a seal key for a handpiece: the private key to the file, the public key
    (what `coreline device key add` takes) and its id to the output."""
    from seal_keys import SealKey  # noqa: PLC0415

    key = SealKey.generate()
    try:
        with out.open("xb") as file:  # never overwrite a device's key
            out.chmod(0o600)
            file.write(key.pem())
    except OSError as error:
        raise _fail("device key generate", error) from None
    typer.echo(f"key id: {key.key_id}", err=True)
    typer.echo(key.public_text)


@device_key_app.command("add")
def device_key_add(
    device_id: Annotated[str, typer.Argument(help="The handpiece's serial.")],
    public_key: Annotated[
        str, typer.Option("--public-key", help="Base64url of the raw 32-byte Ed25519 public key.")
    ],
    database_url: DatabaseOption = None,
) -> None:
    """Register a seal key: from now on the device's batches must be sealed."""
    from services.api import commands  # noqa: PLC0415
    from services.api.problems import Problem  # noqa: PLC0415
    from services.api.token_changes import cli_operator  # noqa: PLC0415

    if not _valid_device_id(device_id):
        raise _fail("device key add", ConfigurationError(f"{device_id!r}: use e.g. HP-000123"))
    with _change_store("device key add", database_url) as store:
        try:
            accepted = commands.register_key(store, device_id, public_key, cli_operator())
        except Problem as problem:
            raise _fail("device key add", ValueError(problem.detail)) from None
    typer.echo(f"registered a seal key for {device_id} ({accepted.stream_id} seq {accepted.seq})")


@device_key_app.command("revoke")
def device_key_revoke(
    device_id: Annotated[str, typer.Argument(help="The handpiece's serial.")],
    key_id: Annotated[str, typer.Option("--key-id", help="The key's 16-hex id.")],
    reason: Annotated[str, typer.Option(help="Why (recorded).")] = "revoked by an operator",
    database_url: DatabaseOption = None,
) -> None:
    """Revoke a seal key: its later seals are refused, those it made stay valid."""
    from services.api import commands  # noqa: PLC0415
    from services.api.problems import Problem  # noqa: PLC0415
    from services.api.token_changes import cli_operator  # noqa: PLC0415

    if not _valid_device_id(device_id):
        raise _fail("device key revoke", ConfigurationError(f"{device_id!r}: use e.g. HP-000123"))
    with _change_store("device key revoke", database_url) as store:
        try:
            accepted = commands.revoke_key(store, device_id, key_id, reason, cli_operator())
        except Problem as problem:
            raise _fail("device key revoke", ValueError(f"{key_id}: {problem.detail}")) from None
    typer.echo(f"revoked key {key_id} of {device_id} ({accepted.stream_id} seq {accepted.seq})")


EmailArgument = Annotated[str, typer.Argument(help="The account's e-mail (its login).")]
ClinicOption = Annotated[
    str | None,
    typer.Option("--clinic", help="The clinic it sees (clinic: required).", show_default=False),
]


@user_app.command("create")
def user_create(
    email: Annotated[str, typer.Option(help="The login, an e-mail address.")],
    name: Annotated[str, typer.Option(help="The display name, recorded on what they do.")],
    role: Annotated[TokenRole, typer.Option(help="What the person may see and do.")],
    clinic: ClinicOption = None,
    database_url: DatabaseOption = None,
) -> None:
    """Create an account; print its initial password (and, for manufacturer and
    auditor accounts, the TOTP enrolment URI) this once.  Single sign-on matches
    people to these accounts by e-mail: no one signs on without one."""
    from services.api.people import UserError, create_user  # noqa: PLC0415
    from services.api.token_changes import cli_operator  # noqa: PLC0415
    from services.api.user_changes import record_user_created  # noqa: PLC0415

    with (
        _people("user create", database_url) as (engine, box),
        _change_store("user create", database_url) as store,
    ):
        try:
            enrolment = create_user(engine, box, email, name, _role(role), clinic)
            record_user_created(store, engine, enrolment.user, cli_operator())
        except UserError as error:
            raise _fail("user create", error) from None
    _print_enrolment(enrolment)


@user_app.command("list")
def user_list(database_url: DatabaseOption = None) -> None:
    """Every account (never a password or secret)."""
    from services.api.people import list_users  # noqa: PLC0415

    with _people("user list", database_url) as (engine, _):
        found = list_users(engine)
    for user in found:
        state = "disabled" if user.disabled else "active"
        typer.echo(
            f"{user.user_id}  {user.role.value:<12} {user.clinic_id or '*':<16} {state:<8} "
            f"{'totp' if user.has_totp else '-':<4}  {user.email}  {user.display_name}"
        )


@user_app.command("disable")
def user_disable(
    email: EmailArgument,
    enable: Annotated[bool, typer.Option("--enable", help="Enable it again instead.")] = False,
    database_url: DatabaseOption = None,
) -> None:
    """Refuse an account's sign-in from now on and end its sessions (or enable it)."""
    from services.api.people import UserError, set_disabled  # noqa: PLC0415

    kind = "user.enabled" if enable else "user.disabled"
    with (
        _people("user disable", database_url) as (engine, _),
        _change_store("user disable", database_url) as store,
    ):
        try:
            _record_user_change(store, engine, email, kind)
            user = set_disabled(engine, email, disabled=not enable)
        except UserError as error:
            raise _fail("user disable", error) from None
    typer.echo(f"{'enabled' if enable else 'disabled'} {user.email} ({user.user_id})")


@user_app.command("reset-password")
def user_reset_password(
    email: EmailArgument,
    new_totp: Annotated[
        bool, typer.Option("--new-totp", help="Enrol a new authenticator too.")
    ] = False,
    database_url: DatabaseOption = None,
) -> None:
    """A new generated password, printed once; ends the account's sessions and lifts
    a lock-out."""
    from services.api.people import UserError, reset_password  # noqa: PLC0415

    with (
        _people("user reset-password", database_url) as (engine, box),
        _change_store("user reset-password", database_url) as store,
    ):
        try:
            _record_user_change(store, engine, email, "user.password_reset")
            enrolment = reset_password(engine, box, email, new_totp=new_totp)
        except UserError as error:
            raise _fail("user reset-password", error) from None
    _print_enrolment(enrolment)


@user_app.command("set-role")
def user_set_role(
    email: EmailArgument,
    role: Annotated[TokenRole, typer.Option(help="What the person may see and do.")],
    clinic: ClinicOption = None,
    database_url: DatabaseOption = None,
) -> None:
    """Change what an account may see and do; its sessions end."""
    from services.api.people import UserError, set_role  # noqa: PLC0415

    with (
        _people("user set-role", database_url) as (engine, _),
        _change_store("user set-role", database_url) as store,
    ):
        try:
            scope = (_role(role), clinic)
            _record_user_change(store, engine, email, "user.role_changed", scope)
            user = set_role(engine, email, *scope)
        except UserError as error:
            raise _fail("user set-role", error) from None
    typer.echo(f"{user.email}: {user.role.value} for {user.clinic_id or 'the whole fleet'}")


def _record_user_change(
    store: "EventStore",
    engine: "Engine",
    email: str,
    kind: str,
    role: "tuple[Role, str | None] | None" = None,
) -> None:
    from services.api.token_changes import cli_operator  # noqa: PLC0415
    from services.api.user_changes import record_user_change  # noqa: PLC0415

    record_user_change(store, engine, email, kind, cli_operator(), role)


@contextmanager
def _people(command: str, database_url: str | None) -> "Iterator[tuple[Engine, SecretBox | None]]":
    from services.api.people import people_config, secret_box  # noqa: PLC0415

    try:
        box = secret_box(people_config())
    except ConfigurationError as error:
        raise _fail(command, error) from None
    engine = _platform_engine(command, database_url)
    try:
        yield engine, box
    finally:
        engine.dispose()


def _print_enrolment(enrolment: "Enrolment") -> None:
    user = enrolment.user
    scope = f"clinic {user.clinic_id}" if user.clinic_id else "the whole fleet"
    typer.echo(f"user {user.user_id}: {user.email}, {user.role.value} for {scope}", err=True)
    if enrolment.totp_uri:
        typer.echo("authenticator (scan or paste into the app; shown once):", err=True)
        typer.echo(f"totp: {enrolment.totp_uri}")
    typer.echo("initial password (hand it over privately; shown once):", err=True)
    typer.echo(f"password: {enrolment.password}")


def _role(choice: TokenRole) -> "Role":
    from services.api import Role  # noqa: PLC0415

    return Role(choice.value)


@contextmanager
def _change_store(command: str, database_url: str | None) -> "Iterator[EventStore]":
    """The event store that records an operator's changes (``coreline token``)."""
    from services.eventstore import EventStoreError, open_event_store  # noqa: PLC0415
    from services.settings import load_settings  # noqa: PLC0415

    try:
        store = open_event_store(load_settings(database_url=database_url).database_url)
    except (ConfigurationError, EventStoreError) as error:
        raise _fail(command, error) from None
    try:
        yield store
    finally:
        store.close()


def _platform_engine(command: str, database_url: str | None) -> "Engine":
    from services.eventstore import EventStoreError, open_event_store  # noqa: PLC0415
    from services.projections.read_store import ReadModelStore  # noqa: PLC0415
    from services.settings import load_settings  # noqa: PLC0415

    try:
        settings = load_settings(database_url=database_url)
        open_event_store(settings.database_url).close()  # reachable, and migrated
    except (ConfigurationError, EventStoreError) as error:
        raise _fail(command, error) from None
    return ReadModelStore(settings.database_url).engine


@app.command()
def demo(
    duration: Annotated[
        float | None, typer.Option(min=1, help="Stop after this many seconds (default: Ctrl-C).")
    ] = None,
    devices: Annotated[int, typer.Option(min=1, max=500, help="Simulated handpieces.")] = 24,
    clinics: Annotated[int, typer.Option(min=1, max=50, help="Clinics they belong to.")] = 3,
    speed: Annotated[
        float, typer.Option(min=1, help="Simulated seconds per second (240: 4 hours a minute).")
    ] = 240.0,
    port: Annotated[int, typer.Option(min=1, max=65535, help="The dashboard's port.")] = 8000,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            help="Keep the database and logs here (default: a temporary directory).",
            show_default=False,
        ),
    ] = None,
    broker: Annotated[
        DemoBroker, typer.Option(help="auto: Mosquitto if installed, else amqtt.")
    ] = DemoBroker.AUTO,
) -> None:
    """Run everything on the embedded default: broker, gateway, projector, alerts, API
    with dashboard and a simulated fleet, with a token for each role."""
    from rich.console import Console  # noqa: PLC0415

    from services.demo import DemoOptions, run_demo  # noqa: PLC0415

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    options = DemoOptions(
        duration_s=duration, devices=devices, clinics=clinics, speed=speed, port=port,
        data_dir=data_dir, broker=broker,
    )  # fmt: skip
    raise typer.Exit(code=run_demo(options, Console(), _stop_on_signals()))


# -- the transparency log (DESIGN §11) ---------------------------------------------


@audit_app.command("init-key")
def audit_init_key(database_url: DatabaseOption = None) -> None:
    """Create the log's signing key (CORELINE_LOG_KEY_FILE) if there is none, and print
    its verifier key: the one witnesses should be given."""
    from services.merkle_log import MerkleLogError, create_key_file, load_verifier  # noqa: PLC0415
    from services.settings import Settings  # noqa: PLC0415

    settings = _configure("audit init-key", Settings, LogLevel.WARNING, database_url=database_url)
    path = settings.log_key_path()
    created = create_key_file(path, settings.log_origin)
    try:
        verifier = load_verifier(path, settings.log_origin)
    except MerkleLogError as error:
        raise _fail("audit init-key", error) from None
    typer.echo(f"{'created' if created else 'kept the existing'} log key {path}", err=True)
    typer.echo(verifier.text())


@audit_app.command("checkpoint")
def audit_checkpoint(
    out: Annotated[Path, typer.Option("--out", help="Where to write the signed checkpoint.")],
    database_url: DatabaseOption = None,
) -> None:
    """Write the log's latest signed checkpoint (a C2SP signed note) to FILE."""
    from services.merkle_log import MerkleLog  # noqa: PLC0415
    from services.settings import Settings  # noqa: PLC0415

    settings = _configure("audit checkpoint", Settings, LogLevel.WARNING, database_url=database_url)
    merkle_log = MerkleLog.open(settings.database_url)
    try:
        latest = merkle_log.latest_checkpoint()
    finally:
        merkle_log.close()
    if latest is None:
        typer.echo("coreline audit checkpoint: the log has no signed checkpoint yet", err=True)
        raise typer.Exit(code=1)
    out.write_text(latest.note)
    typer.echo(f"checkpoint of size {latest.size} written to {out}", err=True)


@audit_app.command("rebuild-log")
def audit_rebuild_log(
    database_url: DatabaseOption = None,
    discard_contradicted: Annotated[
        bool,
        typer.Option(
            help="Replace the log even when kept checkpoints contradict it, deleting those "
            "(witnesses holding them will report the log inconsistent)."
        ),
    ] = False,
) -> None:
    """Rebuild the log from the events alone and check it against every kept checkpoint;
    exits 1, changing nothing, when one is contradicted."""
    from services.eventstore import EventStoreError, open_event_store  # noqa: PLC0415
    from services.merkle_log import LogKeeper, MerkleLog, load_signer, rebuild_log  # noqa: PLC0415
    from services.settings import Settings  # noqa: PLC0415

    settings = _configure(
        "audit rebuild-log", Settings, LogLevel.WARNING, database_url=database_url
    )
    try:
        events = open_event_store(settings.database_url)
    except EventStoreError as error:
        raise _fail("audit rebuild-log", error) from None
    merkle_log = MerkleLog.open(settings.database_url)
    try:
        result = rebuild_log(events, merkle_log, discard_contradicted=discard_contradicted)
        for kept in result.contradicted:
            typer.echo(f"contradicted: the checkpoint of size {kept.size}", err=True)
        if not result.applied:
            typer.echo("coreline audit rebuild-log: nothing changed", err=True)
            raise typer.Exit(code=1)
        signer = load_signer(settings.log_key_path(), settings.log_origin)
        LogKeeper(events, merkle_log, signer).sign_if_due(now=True)
    finally:
        events.close()
        merkle_log.close()
    typer.echo(f"log rebuilt: size {result.size}, root {result.root.hex()}")


@audit_app.command("witness")
def audit_witness(
    state: Annotated[Path, typer.Option("--state", help="Where this witness keeps its state.")],
    api_url: Annotated[
        str | None, typer.Option("--api", help="The platform's API base URL.", show_default=False)
    ] = None,
    token: Annotated[
        str | None, typer.Option("--token", help="A bearer token for --api.", show_default=False)
    ] = None,
    public_key: Annotated[
        str | None,
        typer.Option(
            "--public-key",
            help="The log's verifier key (name+hash+key). Without it, the key found on the "
            "first run is trusted from then on (trust on first use).",
            show_default=False,
        ),
    ] = None,
    database_url: DatabaseOption = None,
) -> None:
    """Fetch the latest checkpoint, verify its signature, check it is consistent with
    the one kept in --state, and keep it.  Exits 1 naming any inconsistency."""
    from services.merkle_log import (  # noqa: PLC0415
        ApiSource,
        CheckpointSource,
        DatabaseSource,
        MerkleLog,
        MerkleLogError,
        load_verifier,
        witness,
    )
    from services.settings import Settings  # noqa: PLC0415
    from services.transparency import NoteError  # noqa: PLC0415

    source: CheckpointSource
    merkle_log = None
    if api_url is not None:
        if token is None:
            raise _fail("audit witness", ConfigurationError("--api needs --token"))
        source = ApiSource(api_url, token)
    else:
        settings = _configure(
            "audit witness", Settings, LogLevel.WARNING, database_url=database_url
        )
        merkle_log = MerkleLog.open(settings.database_url)
        try:
            verifier = load_verifier(settings.log_key_path(), settings.log_origin)
        except MerkleLogError:
            verifier = None
        source = DatabaseSource(merkle_log, verifier)
    try:
        report = witness(state, source, public_key)
    except (MerkleLogError, NoteError) as error:
        typer.echo(f"coreline audit witness: {error}", err=True)
        raise typer.Exit(code=1) from None
    finally:
        if merkle_log is not None:
            merkle_log.close()
    if report.trusted_on_first_use is not None:
        typer.echo(f"trusting the log key on first use: {report.trusted_on_first_use}", err=True)
    if not report.verdict.consistent:
        typer.echo(f"coreline audit witness: INCONSISTENT: {report.verdict.reason}", err=True)
        raise typer.Exit(code=1)
    typer.echo(report.verdict.reason)


@audit_app.command("export")
def audit_export(
    out: Annotated[Path, typer.Option("--out", help="Where to write the bundle.")],
    session: Annotated[
        str | None, typer.Option("--session", help="A session's id.", show_default=False)
    ] = None,
    device: Annotated[
        str | None, typer.Option("--device", help="A device's id.", show_default=False)
    ] = None,
    from_time: Annotated[
        str | None,
        typer.Option(
            "--from", help="With --device: received at or after (RFC 3339).", show_default=False
        ),
    ] = None,
    to_time: Annotated[
        str | None,
        typer.Option(
            "--to", help="With --device: received at or before (RFC 3339).", show_default=False
        ),
    ] = None,
    witness_files: Annotated[
        list[Path] | None,
        typer.Option(
            "--witness",
            help="A checkpoint kept earlier: the bundle proves the log consistent with it.",
            show_default=False,
        ),
    ] = None,
    database_url: DatabaseOption = None,
) -> None:
    """Write the evidence bundle of a session or a device (docs/evidence-bundle.md),
    to be checked offline with coreline-verify.  Exits 1 naming what stops it."""
    from uuid import UUID  # noqa: PLC0415

    from services.eventstore import EventStoreError, open_event_store  # noqa: PLC0415
    from services.evidence import (  # noqa: PLC0415
        EvidenceError,
        ExportError,
        Scope,
        plan_export,
        write_export,
    )
    from services.merkle_log import MerkleLog, MerkleLogError, load_verifier  # noqa: PLC0415
    from services.settings import Settings  # noqa: PLC0415

    command = "audit export"
    if (session is None) == (device is None) or (session and (from_time or to_time)):
        raise _fail(command, ConfigurationError("give --session, or --device [--from --to]"))
    try:
        scope = (
            Scope("session", session_id=str(UUID(session)))
            if session is not None
            else Scope("device", device_id=device, from_time=from_time, to_time=to_time)
        )
        notes = [(str(path), path.read_text()) for path in witness_files or ()]
    except (ValueError, OSError) as error:
        raise _fail(command, error) from None
    settings = _configure(command, Settings, LogLevel.WARNING, database_url=database_url)
    try:
        verifier = load_verifier(settings.log_key_path(), settings.log_origin)
        events = open_event_store(settings.database_url)
    except (MerkleLogError, EventStoreError) as error:
        raise _fail(command, error) from None
    merkle_log = MerkleLog.open(settings.database_url)
    # Written beside the target and renamed at the end: a failure leaves no bundle
    # that looks whole.
    partial = out.with_name(out.name + ".partial")
    try:
        plan = plan_export(events, merkle_log, verifier, scope, notes)
        with partial.open("wb") as file:
            summary = write_export(file, events, merkle_log, plan)
        partial.replace(out)
    except (ExportError, EvidenceError, MerkleLogError) as error:
        partial.unlink(missing_ok=True)
        typer.echo(f"coreline {command}: {error}", err=True)
        raise typer.Exit(code=1) from None
    finally:
        events.close()
        merkle_log.close()
    typer.echo(
        f"{summary.streams} streams, {summary.events} events against the checkpoint of size "
        f"{plan.checkpoint_size}, written to {out}",
        err=True,
    )
