"""``coreline config show|set`` and ``coreline device command send|list``: desired
configuration and tracked commands from the command line, recorded with the
operator as author, exactly as the API records them (docs/device-configuration.md)."""

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from schemas import describe
from schemas.config_events import ConfigLayer, LayerSettings
from transport import ConfigurationError

config_app = typer.Typer(
    help="Desired configuration: the fleet, model, clinic and device layers.",
    no_args_is_help=True,
)
command_app = typer.Typer(help="Tracked commands to a handpiece.", no_args_is_help=True)

DatabaseOption = Annotated[
    str | None,
    typer.Option("--database-url", help="Overrides CORELINE_DATABASE_URL.", show_default=False),
]
FleetFlag = Annotated[bool, typer.Option("--fleet", help="The fleet layer.")]
ModelFlag = Annotated[str | None, typer.Option("--model", help="A model's layer.")]
ClinicFlag = Annotated[str | None, typer.Option("--clinic", help="A clinic's layer.")]
DeviceFlag = Annotated[str | None, typer.Option("--device", help="A device's own layer.")]


def _fail(command: str, detail: str) -> typer.Exit:
    typer.echo(f"coreline {command}: {detail}", err=True)
    return typer.Exit(code=2)


def _layer(
    command: str, fleet: bool, model: str | None, clinic: str | None, device: str | None
) -> tuple[ConfigLayer, str | None]:
    chosen = [
        (flag, subject)
        for flag, subject in (
            (ConfigLayer.FLEET, None if not fleet else ""),
            (ConfigLayer.MODEL, model),
            (ConfigLayer.CLINIC, clinic),
            (ConfigLayer.DEVICE, device),
        )
        if subject is not None
    ]
    if len(chosen) != 1:
        raise _fail(command, "name one layer: --fleet, --model M, --clinic C or --device D")
    layer, subject = chosen[0]
    return layer, subject or None


@contextmanager
def _store(command: str, database_url: str | None) -> "Iterator[Any]":
    from services.eventstore import EventStoreError, open_event_store  # noqa: PLC0415
    from services.settings import load_settings  # noqa: PLC0415

    try:
        store = open_event_store(load_settings(database_url=database_url).database_url)
    except (ConfigurationError, EventStoreError) as error:
        raise _fail(command, str(error)) from None
    try:
        yield store
    finally:
        store.close()


@config_app.command("show")
def config_show(
    fleet: FleetFlag = False,
    model: ModelFlag = None,
    clinic: ClinicFlag = None,
    device: DeviceFlag = None,
    database_url: DatabaseOption = None,
) -> None:
    """Print a layer (only the fields it sets) as JSON, with who set it and when."""
    from services.api.config_changes import recorded_layer  # noqa: PLC0415

    layer, subject = _layer("config show", fleet, model, clinic, device)
    with _store("config show", database_url) as store:
        settings, event, _ = recorded_layer(store, layer, subject)
    changed = None if event is None else json.loads(event.body)["data"]["by"]
    document = {"layer": layer.value, "subject": subject, "settings": settings.named(),
                "changed_by": changed}  # fmt: skip
    typer.echo(json.dumps(document, indent=2, sort_keys=True))


@config_app.command("set")
def config_set(
    settings: Annotated[
        str, typer.Argument(help="The whole layer as JSON, e.g. '{\"heartbeat_interval_s\": 60}'.")
    ],
    fleet: FleetFlag = False,
    model: ModelFlag = None,
    clinic: ClinicFlag = None,
    device: DeviceFlag = None,
    database_url: DatabaseOption = None,
) -> None:
    """Replace a layer (``{}`` clears it); a clinic's must keep within the bounds."""
    from services.api.config_changes import change_layer  # noqa: PLC0415
    from services.api.problems import Problem  # noqa: PLC0415
    from services.api.token_changes import cli_operator  # noqa: PLC0415

    layer, subject = _layer("config set", fleet, model, clinic, device)
    try:
        wanted = LayerSettings.model_validate_json(settings)
    except ValidationError as error:
        raise _fail("config set", describe(error)) from None
    with _store("config set", database_url) as store:
        try:
            accepted = change_layer(store, layer, subject, wanted, cli_operator())
        except Problem as problem:
            raise _fail("config set", problem.detail or problem.title) from None
    if accepted is None:
        typer.echo(f"the {layer.value} layer is so already: nothing recorded")
    else:
        typer.echo(f"recorded {accepted.type} ({accepted.stream_id} seq {accepted.seq})")


@command_app.command("send")
def command_send(
    device_id: Annotated[str, typer.Argument(help="The handpiece's serial.")],
    cmd: Annotated[
        str,
        typer.Argument(
            help="lock, unlock, reboot, resync, collect_diagnostics, resend, override_interlock"
        ),
    ],
    args: Annotated[str, typer.Option("--args", help="Its arguments as JSON.")] = "{}",
    expires_in: Annotated[int, typer.Option("--expires-in", help="Seconds it may wait.")] = 3600,
    database_url: DatabaseOption = None,
) -> None:
    """Record ``command.issued``; ``coreline projector`` delivers it.  Prints the
    command id alone on the last line."""
    from services.api.config_changes import issue_command  # noqa: PLC0415
    from services.api.problems import Problem  # noqa: PLC0415
    from services.api.token_changes import cli_operator  # noqa: PLC0415

    try:
        arguments = json.loads(args)
    except json.JSONDecodeError as error:
        raise _fail("device command send", f"--args is not JSON: {error}") from None
    if not isinstance(arguments, dict):
        raise _fail("device command send", "--args must be a JSON object")
    with _store("device command send", database_url) as store:
        try:
            issued = issue_command(store, device_id, cmd, arguments, expires_in, cli_operator())
        except Problem as problem:
            raise _fail("device command send", problem.detail or problem.title) from None
    typer.echo(f"{issued.cmd.value} to {device_id}, expires {issued.expires_at}", err=True)
    typer.echo(issued.command_id)


@command_app.command("list")
def command_list(
    device_id: Annotated[str, typer.Argument(help="The handpiece's serial.")],
    database_url: DatabaseOption = None,
) -> None:
    """The device's commands, newest first: id, command, state, author, times."""
    from services.config_delivery.database import open_engine  # noqa: PLC0415
    from services.config_delivery.views import list_commands  # noqa: PLC0415
    from services.settings import load_settings  # noqa: PLC0415

    try:
        engine = open_engine(load_settings(database_url=database_url).database_url)
    except ConfigurationError as error:
        raise _fail("device command list", str(error)) from None
    try:
        with engine.connect() as connection:
            commands = list_commands(connection, device_id)
    finally:
        engine.dispose()
    for command in commands:
        answer = command.reason or ""
        typer.echo(
            f"{command.command_id}  {command.cmd:<19} {command.state.value:<12} "
            f"issued {command.issued_at} by {command.issued_by}  "
            f"expires {command.expires_at}  {command.answered_at or ''} {answer}".rstrip()
        )
