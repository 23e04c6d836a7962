"""Where the fleet CA is and how it issues, from ``CORELINE_*`` variables: what the
API (enrolment, renewal, revocation), the command line and ``coreline db upgrade``
share (docs/device-identity.md)."""

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Final

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.eventstore import Backend, DatabaseUrl
from transport import ConfigurationError

FLEET_CA_DIR_NAME: Final = "fleet-ca"
CRL_NAME: Final = "fleet-ca.crl"

Lifetime = Annotated[timedelta, Field(gt=timedelta(0))]


class IdentitySettings(BaseSettings):
    """A lifetime is an ISO 8601 duration: ``P90D``, ``PT12H``."""

    model_config = SettingsConfigDict(env_prefix="CORELINE_", extra="ignore")

    fleet_ca_dir: Path | None = None
    """``ca.key`` and ``ca.crt`` (made by ``coreline fleet-ca init``, or by ``coreline
    db upgrade`` when missing): by default ``fleet-ca/`` beside the SQLite file, else
    ``./fleet-ca``."""
    fleet_ca_certificate_lifetime: Lifetime = timedelta(days=90)
    """How long a device certificate is valid; devices renew at two thirds of it."""
    fleet_ca_crl_file: Path | None = None
    """Where the CRL the broker reads is written (its ``crlfile``); by default
    ``fleet-ca.crl`` in the fleet CA's directory."""
    fleet_ca_crl_validity: Lifetime = timedelta(days=30)
    """How long a CRL is valid: past it the broker refuses every device, so
    ``coreline fleet-ca crl`` must run well within it (daily, say)."""
    fleet_ca_broker_pid_file: Path | None = None
    """A broker on this host whose pid is in this file gets SIGHUP after every new
    CRL, which makes Mosquitto read it again (elsewhere, see docs/device-identity.md)."""
    claim_lifetime: Lifetime = timedelta(days=30)
    """How long a claim secret may be used to enrol."""
    factory_ca_file: Path | None = None
    """The factory CA certificates (PEM) whose certificates enrol devices; without
    it, only claim secrets do."""


@dataclass(frozen=True, slots=True)
class IdentityConfig:
    fleet_ca_dir: Path
    certificate_lifetime: timedelta = timedelta(days=90)
    crl_file: Path | None = None
    crl_validity: timedelta = timedelta(days=30)
    broker_pid_file: Path | None = None
    claim_lifetime: timedelta = timedelta(days=30)
    factory_ca_file: Path | None = None

    @property
    def crl_path(self) -> Path:
        return self.crl_file or self.fleet_ca_dir / CRL_NAME


def identity_config(database_url: str, **overrides: Any) -> IdentityConfig:
    """The settings from the environment (``overrides`` win), the fleet CA's
    directory defaulting beside a SQLite file."""
    given = {key: value for key, value in overrides.items() if value is not None}
    try:
        settings = IdentitySettings(**given)
    except ValidationError as error:
        problems = "; ".join(
            f"CORELINE_{'_'.join(str(part) for part in problem['loc']).upper()}: {problem['msg']}"
            for problem in error.errors(include_url=False, include_input=False)
        )
        raise ConfigurationError(problems) from None
    return IdentityConfig(
        fleet_ca_dir=settings.fleet_ca_dir or default_fleet_ca_dir(database_url),
        certificate_lifetime=settings.fleet_ca_certificate_lifetime,
        crl_file=settings.fleet_ca_crl_file,
        crl_validity=settings.fleet_ca_crl_validity,
        broker_pid_file=settings.fleet_ca_broker_pid_file,
        claim_lifetime=settings.claim_lifetime,
        factory_ca_file=settings.factory_ca_file,
    )


def default_fleet_ca_dir(database_url: str) -> Path:
    database = DatabaseUrl.parse(database_url)
    if database.backend is Backend.SQLITE:
        return database.sqlite_path.parent / FLEET_CA_DIR_NAME
    return Path(FLEET_CA_DIR_NAME)
