"""People: named accounts (argon2id passwords, TOTP, lock-out), dashboard sessions
kept on the server, CSRF protection and OpenID Connect single sign-on."""

from dataclasses import dataclass

from sqlalchemy import Engine

from services.api.people.account import User, needs_totp
from services.api.people.lockout import AddressThrottle
from services.api.people.oidc import OidcClient, OidcClientSettings, OidcError, SignOnRefused
from services.api.people.password_sign_in import PasswordSignIn, SignInRefused
from services.api.people.secret_box import SecretBox
from services.api.people.settings import PeopleConfig, people_config
from services.api.people.users import (
    Enrolment,
    UserError,
    create_user,
    find_user,
    list_users,
    reset_password,
    set_disabled,
    set_role,
)
from services.api.people.web_sessions import close_session, open_session, session_principal

__all__ = [
    "Enrolment",
    "OidcClientSettings",
    "OidcError",
    "People",
    "PeopleConfig",
    "SecretBox",
    "SignInRefused",
    "SignOnRefused",
    "User",
    "UserError",
    "close_session",
    "create_user",
    "find_user",
    "list_users",
    "needs_totp",
    "open_session",
    "people_config",
    "reset_password",
    "secret_box",
    "session_principal",
    "set_disabled",
    "set_role",
]


def secret_box(config: PeopleConfig) -> SecretBox | None:
    return None if config.secret_key is None else SecretBox(config.secret_key)


@dataclass(frozen=True, slots=True)
class People:
    """What the API needs to let people in: password sign-in and, when configured,
    single sign-on."""

    passwords: PasswordSignIn
    sso: OidcClient | None

    @classmethod
    def build(cls, engine: Engine, config: PeopleConfig) -> "People":
        sign_in = PasswordSignIn(engine, secret_box(config), AddressThrottle())
        return cls(sign_in, None if config.oidc is None else OidcClient(config.oidc))
