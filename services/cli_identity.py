"""``coreline fleet-ca``, ``coreline device claim|identity|decommission|cert`` and
``coreline agent enrol|renew|rotate-seal-key``: device identity for life on the
command line (docs/device-identity.md).  ``services.cli`` mounts these commands."""

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from schemas.fields import DEVICE_ID_PATTERN
from transport import ConfigurationError

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from edge_agent.batches import Sealer
    from services.api.identity import IdentityConfig
    from services.eventstore import EventStore

fleet_ca_app = typer.Typer(
    help="The fleet CA: its key and certificate, the broker's certificate, the CRL.",
    no_args_is_help=True,
)
device_cert_app = typer.Typer(help="Devices' MQTT client certificates.", no_args_is_help=True)

DatabaseOption = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        help="Overrides CORELINE_DATABASE_URL (sqlite:///file.db or postgresql://…).",
        show_default=False,
    ),
]
DeviceArgument = Annotated[str, typer.Argument(help="The handpiece's device id (HP-000123).")]
IdentityDirOption = Annotated[
    Path,
    typer.Option("--identity-dir", help="The device's identity directory (keys, certificate, CA)."),
]


def _fail(command: str, error: Exception | str) -> typer.Exit:
    typer.echo(f"coreline {command}: {error}", err=True)
    return typer.Exit(code=2)


def _check_device_id(command: str, device_id: str) -> None:
    import re  # noqa: PLC0415

    if re.fullmatch(DEVICE_ID_PATTERN, device_id) is None:
        raise _fail(command, f"{device_id!r} is not a device id: use e.g. HP-000123")


def _config(command: str, database_url: str | None) -> "tuple[str, IdentityConfig]":
    from services.api.identity import identity_config  # noqa: PLC0415
    from services.settings import load_settings  # noqa: PLC0415

    try:
        url = load_settings(database_url=database_url).database_url
        return url, identity_config(url)
    except ConfigurationError as error:
        raise _fail(command, error) from None


@contextmanager
def _platform(command: str, database_url: str | None) -> "Iterator[tuple[EventStore, Engine]]":
    """The event store and the engine of the platform's tables, closed at the end."""
    from services.eventstore import EventStoreError, open_event_store  # noqa: PLC0415
    from services.projections.read_store import ReadModelStore  # noqa: PLC0415

    url, _ = _config(command, database_url)
    try:
        store = open_event_store(url)
    except EventStoreError as error:
        raise _fail(command, error) from None
    engine = ReadModelStore(url).engine
    try:
        yield store, engine
    finally:
        store.close()
        engine.dispose()


def create_missing_fleet_ca(database_url: str) -> Path | None:
    """For ``coreline db upgrade``: a fleet CA in ``CORELINE_FLEET_CA_DIR``, or beside a
    SQLite file (the embedded default), unless one is there; its directory when it was
    made.  Never in the working directory by default: a server's CA is made on
    purpose (``coreline fleet-ca init``), where the API will find it."""
    from fleet_ca import ensure_fleet_ca  # noqa: PLC0415
    from services.api.identity import IdentitySettings, identity_config  # noqa: PLC0415
    from services.eventstore import Backend, DatabaseUrl  # noqa: PLC0415

    configured = IdentitySettings().fleet_ca_dir
    if configured is None and DatabaseUrl.parse(database_url).backend is not Backend.SQLITE:
        return None
    directory = identity_config(database_url).fleet_ca_dir
    return directory if ensure_fleet_ca(directory) else None


# -- coreline fleet-ca ------------------------------------------------------------------


@fleet_ca_app.command("init")
def fleet_ca_init(
    directory: Annotated[
        Path | None,
        typer.Option("--dir", help="Overrides CORELINE_FLEET_CA_DIR.", show_default=False),
    ] = None,
    days: Annotated[int, typer.Option(min=1, max=36500, help="The CA's lifetime.")] = 3650,
    database_url: DatabaseOption = None,
) -> None:
    """Create the fleet CA (ca.key, mode 600, and ca.crt) and an empty CRL; refuses to
    overwrite either."""
    from fleet_ca import FleetCaError, create_fleet_ca  # noqa: PLC0415
    from services.api.identity.revocation_list import write_public  # noqa: PLC0415

    _, config = _config("fleet-ca init", database_url)
    place = directory or config.fleet_ca_dir
    try:
        ca = create_fleet_ca(place, lifetime=timedelta(days=days))
    except (FleetCaError, OSError) as error:
        raise _fail("fleet-ca init", error) from None
    crl = config.crl_path if directory is None else place / config.crl_path.name
    write_public(crl, ca.revocation_list([], valid_for=config.crl_validity))
    typer.echo(f"wrote {place / 'ca.key'} (the fleet CA's private key, mode 600)")
    typer.echo(f"wrote {place / 'ca.crt'} (its certificate: the broker's cafile)")
    typer.echo(f"wrote {crl} (an empty CRL: the broker's crlfile)")


@fleet_ca_app.command("server-cert")
def fleet_ca_server_cert(
    names: Annotated[
        list[str],
        typer.Option("--name", help="A host name or IP address of the broker (repeatable)."),
    ],
    out: Annotated[Path, typer.Option("--out", help="Writes server.key and server.crt here.")],
    directory: Annotated[
        Path | None,
        typer.Option("--dir", help="Overrides CORELINE_FLEET_CA_DIR.", show_default=False),
    ] = None,
    days: Annotated[int, typer.Option(min=1, max=3650, help="Its lifetime.")] = 825,
    database_url: DatabaseOption = None,
) -> None:
    """The broker's TLS certificate from the fleet CA: CN = the first name, every name
    a subjectAltName, serverAuth only (it can never log in as a device)."""
    from fleet_ca import FleetCa, FleetCaError, public_key_of, write_new_key  # noqa: PLC0415

    _, config = _config("fleet-ca server-cert", database_url)
    for path in (out / "server.key", out / "server.crt"):
        if path.exists():
            raise _fail("fleet-ca server-cert", f"{path} exists already: nothing was changed")
    try:
        ca = FleetCa.load(directory or config.fleet_ca_dir)
        out.mkdir(parents=True, exist_ok=True)
        key = write_new_key(out / "server.key")
        issued = ca.issue_server(public_key_of(key), names, lifetime=timedelta(days=days))
        (out / "server.crt").write_bytes(issued.pem)
    except (FleetCaError, OSError) as error:
        raise _fail("fleet-ca server-cert", error) from None
    typer.echo(f"wrote {out / 'server.key'} (private key, mode 600)")
    typer.echo(f"wrote {out / 'server.crt'} (broker certificate for {', '.join(names)}, "
               f"until {issued.facts.not_after:%Y-%m-%d})")  # fmt: skip


@fleet_ca_app.command("crl")
def fleet_ca_crl(database_url: DatabaseOption = None) -> None:
    """Write the CRL again (every revoked, unexpired certificate) and signal the broker
    (CORELINE_FLEET_CA_BROKER_PID_FILE).  Run it daily: a CRL past its validity makes
    the broker refuse every device."""
    from fleet_ca import FleetCaError  # noqa: PLC0415
    from services.api.identity import publish_crl  # noqa: PLC0415

    _, config = _config("fleet-ca crl", database_url)
    with _platform("fleet-ca crl", database_url) as (store, engine):
        try:
            published = publish_crl(store, engine, config)
        except (FleetCaError, OSError) as error:
            raise _fail("fleet-ca crl", error) from None
    signalled = ", broker signalled" if published.broker_signalled else ""
    typer.echo(f"{published.path}: {published.revoked} revoked certificates{signalled}")


# -- coreline device ----------------------------------------------------------------------


def device_claim(
    device_id: DeviceArgument,
    serial: Annotated[str, typer.Option("--serial", help="The serial printed on the handpiece.")],
    expires_in_days: Annotated[
        int | None,
        typer.Option(
            min=1, max=365, help="Default: CORELINE_CLAIM_LIFETIME (30 days).", show_default=False
        ),
    ] = None,
    database_url: DatabaseOption = None,
) -> None:
    """Issue a one-time claim secret for a registered device's serial; it is printed
    alone on the last line, once (the platform keeps its SHA-256)."""
    from services.api.identity import issue_claim  # noqa: PLC0415
    from services.api.problems import Problem  # noqa: PLC0415
    from services.api.token_changes import cli_operator  # noqa: PLC0415

    _check_device_id("device claim", device_id)
    _, config = _config("device claim", database_url)
    lifetime = config.claim_lifetime if expires_in_days is None else timedelta(expires_in_days)
    with _platform("device claim", database_url) as (store, _):
        try:
            claim = issue_claim(store, device_id, serial, cli_operator(), lifetime)
        except Problem as problem:
            raise _fail("device claim", problem.detail) from None
    typer.echo(f"claim for {device_id} (serial {serial}), valid until "
               f"{claim.expires_at:%Y-%m-%d %H:%M}Z; hand it to the device, it is not shown "
               "again:", err=True)  # fmt: skip
    typer.echo(claim.secret)


def device_identity(device_id: DeviceArgument, database_url: DatabaseOption = None) -> None:
    """Print the device's identity (claim, enrolment, certificates, decommissioning) as JSON."""
    from services.api.identity import load_identity  # noqa: PLC0415
    from services.api.identity.views import identity_out  # noqa: PLC0415

    _check_device_id("device identity", device_id)
    with _platform("device identity", database_url) as (store, _):
        identity = identity_out(load_identity(store, device_id), datetime.now(UTC))
    typer.echo(identity.model_dump_json(indent=2))


def device_decommission(
    device_id: DeviceArgument,
    reason: Annotated[str, typer.Option("--reason", help="Why (recorded).")],
    database_url: DatabaseOption = None,
) -> None:
    """Retire a device for good: its certificates are revoked (the CRL is written), its
    later events refused; it can never be assigned, claimed or enrolled again."""
    from services.api.identity import decommission  # noqa: PLC0415
    from services.api.problems import Problem  # noqa: PLC0415
    from services.api.token_changes import cli_operator  # noqa: PLC0415

    _check_device_id("device decommission", device_id)
    _, config = _config("device decommission", database_url)
    with _platform("device decommission", database_url) as (store, engine):
        try:
            revoked = decommission(store, device_id, reason, cli_operator())
        except Problem as problem:
            raise _fail("device decommission", problem.detail) from None
        typer.echo(f"{device_id} decommissioned; {revoked} certificates revoked")
        _publish(store, engine, config)


@device_cert_app.command("revoke")
def device_cert_revoke(
    device_id: DeviceArgument,
    reason: Annotated[str, typer.Option("--reason", help="Why (recorded).")],
    fingerprint: Annotated[
        str | None,
        typer.Option("--fingerprint", help="The certificate's SHA-256 (hex).", show_default=False),
    ] = None,
    every: Annotated[
        bool, typer.Option("--all", help="Every certificate the device still holds.")
    ] = False,
    database_url: DatabaseOption = None,
) -> None:
    """Revoke a device certificate and write the CRL: its next connection is refused."""
    from services.api.identity import load_identity, revoke_certificate  # noqa: PLC0415
    from services.api.problems import Problem  # noqa: PLC0415
    from services.api.token_changes import cli_operator  # noqa: PLC0415

    _check_device_id("device cert revoke", device_id)
    if (fingerprint is None) == (not every):
        raise _fail("device cert revoke", "give --fingerprint F or --all")
    _, config = _config("device cert revoke", database_url)
    with _platform("device cert revoke", database_url) as (store, engine):
        chosen = (
            [fingerprint]
            if fingerprint is not None
            else [item.fingerprint for item in load_identity(store, device_id).unrevoked()]
        )
        for each in chosen:
            try:
                revoke_certificate(store, device_id, each, reason, cli_operator())
            except Problem as problem:
                raise _fail("device cert revoke", f"{each}: {problem.detail}") from None
            typer.echo(f"revoked {each} of {device_id}")
        _publish(store, engine, config)


def _publish(store: "EventStore", engine: "Engine", config: "IdentityConfig") -> None:
    from fleet_ca import FleetCaError  # noqa: PLC0415
    from services.api.identity import publish_crl  # noqa: PLC0415

    try:
        published = publish_crl(store, engine, config)
    except (FleetCaError, OSError) as error:
        typer.echo(f"the CRL was not written ({error}): run `coreline fleet-ca crl`", err=True)
        raise typer.Exit(code=1) from None
    signalled = ", broker signalled" if published.broker_signalled else ""
    typer.echo(f"{published.path}: {published.revoked} revoked certificates{signalled}")


# -- coreline agent -----------------------------------------------------------------------


def agent_enrol(
    device_id: Annotated[str, typer.Option("--device-id", help="This handpiece's id.")],
    serial: Annotated[str, typer.Option("--serial", help="Its serial number.")],
    api: Annotated[str, typer.Option("--api", help="The platform's API (https://…).")],
    identity_dir: IdentityDirOption,
    claim_secret_file: Annotated[
        Path | None,
        typer.Option(
            "--claim-secret-file", help="The claim secret, in a file.", show_default=False
        ),
    ] = None,
    factory_cert: Annotated[
        Path | None,
        typer.Option("--factory-cert", help="The factory certificate (PEM).", show_default=False),
    ] = None,
    factory_key: Annotated[
        Path | None,
        typer.Option("--factory-key", help="Its private key (PEM).", show_default=False),
    ] = None,
) -> None:
    """Enrol this handpiece once: make its TLS and seal keys, send the request with the
    claim secret (or the factory certificate), keep the certificate it gets."""
    from edge_agent.enrolment import (  # noqa: PLC0415
        EnrolmentError,
        FactoryIdentity,
        IdentityFiles,
        enrol_device,
    )

    _check_device_id("agent enrol", device_id)
    if (claim_secret_file is None) == (factory_cert is None) or (
        (factory_cert is None) != (factory_key is None)
    ):
        raise _fail("agent enrol", "give --claim-secret-file, or --factory-cert and --factory-key")
    files = IdentityFiles(identity_dir)
    try:
        secret = claim_secret_file.read_text().strip() if claim_secret_file else None
        factory = (
            FactoryIdentity(factory_cert.read_text(), factory_key.read_bytes())
            if factory_cert and factory_key
            else None
        )
        enrolled = enrol_device(files, device_id, serial, api, claim_secret=secret, factory=factory)
    except (EnrolmentError, OSError) as error:
        raise _fail("agent enrol", error) from None
    typer.echo(f"{device_id} enrolled: certificate {enrolled.fingerprint}, valid until "
               f"{enrolled.not_after:%Y-%m-%d %H:%M}Z", err=True)  # fmt: skip
    typer.echo(f"run it with: coreline agent --device-id {device_id} --identity-dir "
               f"{identity_dir} --mqtt-url mqtts://HOST:8883", err=True)  # fmt: skip


def agent_renew(identity_dir: IdentityDirOption) -> None:
    """Renew the certificate now (a running agent does this itself at 2/3 of its life)."""
    from edge_agent.enrolment import EnrolmentError, IdentityFiles  # noqa: PLC0415
    from edge_agent.renewal import renew  # noqa: PLC0415

    try:
        renewed = renew(IdentityFiles(identity_dir))
    except (EnrolmentError, OSError) as error:
        raise _fail("agent renew", error) from None
    typer.echo(
        f"certificate {renewed.fingerprint}, valid until {renewed.not_after:%Y-%m-%d %H:%M}Z"
    )


def agent_rotate_seal_key(identity_dir: IdentityDirOption) -> None:
    """Replace the seal key (with the agent stopped): the platform registers the new
    key and revokes the old one, whose seals so far stay valid."""
    from edge_agent.enrolment import EnrolmentError, IdentityFiles  # noqa: PLC0415
    from edge_agent.renewal import rotate_seal_key  # noqa: PLC0415

    try:
        key_id = rotate_seal_key(IdentityFiles(identity_dir))
    except (EnrolmentError, OSError) as error:
        raise _fail("agent rotate-seal-key", error) from None
    typer.echo(f"seal key {key_id}")


@dataclass(frozen=True, slots=True)
class AgentIdentity:
    """What ``coreline agent --identity-dir`` takes from the directory."""

    device_id: str | None = None
    mqtt_files: dict[str, Path] = field(default_factory=dict)
    """``CORELINE_MQTT_CA_FILE``, ``_CERT_FILE`` and ``_KEY_FILE``, as settings."""
    signer: "Sealer | None" = None
    upkeep: Callable[[], None] | None = None
    """Renews the certificate when it falls due."""


def agent_identity(command: str, identity_dir: Path | None, device_id: str | None) -> AgentIdentity:
    if identity_dir is None:
        return AgentIdentity()
    from edge_agent.enrolment import EnrolmentError, IdentityFiles  # noqa: PLC0415
    from edge_agent.renewal import Renewal  # noqa: PLC0415
    from seal_keys import SealKey, SealKeyError  # noqa: PLC0415

    files = IdentityFiles(identity_dir)
    try:
        enrolled_as = files.device_id
        signer = SealKey.load(files.seal_key)
    except (EnrolmentError, OSError, SealKeyError) as error:
        raise _fail(command, error) from None
    if device_id is not None and device_id != enrolled_as:
        raise _fail(command, f"{identity_dir} is {enrolled_as}'s identity, not {device_id}'s")
    return AgentIdentity(
        device_id=enrolled_as,
        mqtt_files={
            "mqtt_ca_file": files.ca,
            "mqtt_cert_file": files.tls,
            "mqtt_key_file": files.tls,
        },
        signer=signer,
        upkeep=Renewal(files).tick,
    )
