"""``coreline``: one command line for every Coreline process (DESIGN §10)."""

from typing import Annotated

import typer

from services.eventstore import EventStoreError, redact, upgrade_schema
from services.settings import ConfigurationError, load_settings

app = typer.Typer(
    name="coreline",
    help="Coreline: event-sourced fleet and telemetry for dermal micro-coring handpieces.",
    no_args_is_help=True,
    add_completion=False,
)
db_app = typer.Typer(help="Manage the database schema.", no_args_is_help=True)
app.add_typer(db_app, name="db")

DatabaseOption = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        help="Overrides CORELINE_DATABASE_URL (sqlite:///file.db or postgresql://…).",
        show_default=False,
    ),
]


@db_app.command("upgrade")
def db_upgrade(database_url: DatabaseOption = None) -> None:
    """Create the schema, or bring it up to date; a no-op when it already is."""
    try:
        settings = load_settings(database_url=database_url)
        upgrade_schema(settings.database_url)
    except (ConfigurationError, EventStoreError) as error:
        typer.echo(f"coreline db upgrade: {error}", err=True)
        raise typer.Exit(code=2) from None
    typer.echo(f"schema is up to date: {redact(settings.database_url)}")
