"""Where people's secrets and the single sign-on client come from: ``CORELINE_*``.

``CORELINE_SECRET_KEY`` (32+ characters of randomness, e.g. ``openssl rand -hex 32``)
seals every TOTP secret in the ``users`` table.  Without it the key is derived from
``CORELINE_WEBHOOK_MASTER_KEY`` (with a label of its own, so neither secret reveals
the other); with neither, accounts that need TOTP can be neither created nor used.
Changing the key makes every enrolled authenticator useless: re-enrol with
``coreline user reset-password --new-totp``.

Single sign-on is on when all four ``CORELINE_OIDC_*`` variables are set, and off
when none is; anything between is refused at start-up.
"""

import hashlib
import hmac
from dataclasses import dataclass
from typing import Final

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.api.people.oidc import OidcClientSettings
from services.egress import EgressGate, EgressSettings
from transport import ConfigurationError

MIN_SECRET_KEY_LENGTH: Final = 32
_DERIVATION_LABEL: Final = b"coreline people secret key v1"


class PeopleSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CORELINE_", extra="ignore")

    secret_key: SecretStr | None = Field(default=None, min_length=MIN_SECRET_KEY_LENGTH)
    webhook_master_key: SecretStr | None = Field(default=None, min_length=MIN_SECRET_KEY_LENGTH)
    oidc_issuer: str | None = None
    """The provider's issuer URL; its discovery document is read from there."""
    oidc_client_id: str | None = None
    oidc_client_secret: SecretStr | None = None
    oidc_redirect_url: str | None = None
    """This server's ``/login/sso/callback`` as the provider knows it."""


@dataclass(frozen=True, slots=True)
class PeopleConfig:
    secret_key: bytes | None
    """Seals TOTP secrets; ``None``: no account needing TOTP can be used."""
    oidc: OidcClientSettings | None = None
    """``None``: single sign-on is off."""


def people_config(master_key: bytes | None = None) -> PeopleConfig:
    """The configuration from the environment; ``master_key`` is the webhook master key
    the caller already holds, used when ``CORELINE_SECRET_KEY`` is not set."""
    try:
        settings = PeopleSettings()
    except ValidationError as error:
        problems = "; ".join(
            f"CORELINE_{'_'.join(map(str, problem['loc'])).upper()}: {problem['msg']}"
            for problem in error.errors()
        )
        raise ConfigurationError(problems) from None
    return PeopleConfig(secret_key=_secret_key(settings, master_key), oidc=_oidc(settings))


def _secret_key(settings: PeopleSettings, master_key: bytes | None) -> bytes | None:
    if settings.secret_key is not None:
        return settings.secret_key.get_secret_value().encode()
    if master_key is None and settings.webhook_master_key is not None:
        master_key = settings.webhook_master_key.get_secret_value().encode()
    if master_key is None:
        return None
    return hmac.new(master_key, _DERIVATION_LABEL, hashlib.sha256).digest()


def _oidc(settings: PeopleSettings) -> OidcClientSettings | None:
    values = {
        "CORELINE_OIDC_ISSUER": settings.oidc_issuer,
        "CORELINE_OIDC_CLIENT_ID": settings.oidc_client_id,
        "CORELINE_OIDC_CLIENT_SECRET": settings.oidc_client_secret,
        "CORELINE_OIDC_REDIRECT_URL": settings.oidc_redirect_url,
    }
    missing = [name for name, value in values.items() if not value]
    if len(missing) == len(values):
        return None
    if missing:
        raise ConfigurationError(
            f"single sign-on needs all four CORELINE_OIDC_* variables; set {', '.join(missing)}"
            " (or unset the others to turn it off)"
        )
    assert settings.oidc_client_secret is not None  # noqa: S101 - checked just above
    client = OidcClientSettings(
        issuer=str(settings.oidc_issuer),
        client_id=str(settings.oidc_client_id),
        client_secret=settings.oidc_client_secret.get_secret_value(),
        redirect_url=str(settings.oidc_redirect_url),
        egress=_egress_gate(),
    )
    problem = client.problem()
    if problem:
        raise ConfigurationError(problem)
    return client


def _egress_gate() -> EgressGate:
    try:
        return EgressGate(allow=EgressSettings().allow_list())
    except ValidationError as error:
        raise ConfigurationError(f"CORELINE_EGRESS_ALLOW: {error.errors()[0]['msg']}") from None
