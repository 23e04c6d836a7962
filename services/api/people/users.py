"""Named accounts: who a person is, what they may see, and how they prove it.

A password is kept only as its argon2id hash; a TOTP secret only sealed with the
platform's secret key (``settings.py``).  Logins are e-mail addresses, compared in
lower case.
"""

import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from sqlalchemy import Connection, Engine, RowMapping, select, update

from schemas.fields import CLINIC_ID_PATTERN
from services.api.access import Role, scope_problem
from services.api.people import passwords, totp
from services.api.people.account import User, needs_totp, user_from_row
from services.api.people.lockout import Attempts
from services.api.people.secret_box import SecretBox
from services.api.people.tables import users
from services.api.people.web_sessions import revoke_sessions

_EMAIL: Final = re.compile(r"[^@\s]{1,64}@[^@\s]{1,190}\.[^@\s.]{2,63}")
_CLINIC_ID: Final = re.compile(CLINIC_ID_PATTERN)
_MAX_NAME: Final = 120


class UserError(ValueError):
    """An account that cannot be created or changed as asked; the message says why."""


@dataclass(frozen=True, slots=True)
class Enrolment:
    """What a new or reset account's holder is told, once."""

    user: User
    password: str
    totp_uri: str | None
    """``otpauth://`` for the authenticator app; ``None`` when the role needs none."""


@dataclass(frozen=True, slots=True)
class Credentials:
    """A stored account as sign-in needs it."""

    user: User
    password_hash: str | None
    totp_sealed: str | None
    totp_last_step: int | None
    attempts: Attempts


def normal_email(email: str) -> str:
    return email.strip().lower()


def create_user(
    engine: Engine,
    box: SecretBox | None,
    email: str,
    display_name: str,
    role: Role,
    clinic_id: str | None = None,
) -> Enrolment:
    """A new account with a generated password (and a TOTP secret when the role needs
    one), both returned this once."""
    email = normal_email(email)
    _check(email, display_name, role, clinic_id)
    password = passwords.new_password()
    secret, sealed = _new_totp(box, role)
    now = datetime.now(UTC)
    user = User(
        user_id=f"u_{secrets.token_hex(6)}", email=email, display_name=display_name.strip(),
        role=role, clinic_id=clinic_id, disabled=False, created_at=now,
        has_totp=sealed is not None,
    )  # fmt: skip
    with engine.begin() as connection:
        if _find_row(connection, email) is not None:
            raise UserError(f"there is already an account for {email}")
        connection.execute(
            users.insert().values(
                user_id=user.user_id, email=email, display_name=user.display_name,
                role=role.value, clinic_id=clinic_id,
                password_hash=passwords.hash_password(password), totp_sealed=sealed,
                totp_last_step=None, disabled=False, failed_attempts=0, locked_until=None,
                created_at=now, updated_at=now,
            )
        )  # fmt: skip
    uri = None if secret is None else totp.provisioning_uri(secret, email)
    return Enrolment(user, password, uri)


def reset_password(
    engine: Engine, box: SecretBox | None, email: str, *, new_totp: bool = False
) -> Enrolment:
    """A new generated password (and, if asked or never enrolled, a new TOTP secret);
    the lock-out is lifted and every session of the account ends."""
    found = find_user(engine, email)
    if found is None:
        raise UserError(f"no account for {normal_email(email)} (see `coreline user list`)")
    password = passwords.new_password()
    values: dict[str, object] = {
        "password_hash": passwords.hash_password(password), "failed_attempts": 0,
        "locked_until": None, "updated_at": datetime.now(UTC),
    }  # fmt: skip
    secret = None
    if needs_totp(found.role) and (new_totp or not found.has_totp):
        secret, values["totp_sealed"] = _new_totp(box, found.role)
        values["totp_last_step"] = None
    with engine.begin() as connection:
        connection.execute(update(users).where(users.c.user_id == found.user_id).values(values))
        revoke_sessions(connection, found.user_id)
    uri = None if secret is None else totp.provisioning_uri(secret, found.email)
    return Enrolment(found, password, uri)


def set_disabled(engine: Engine, email: str, disabled: bool = True) -> User:
    """Disable (or enable again) an account; disabling ends all its sessions."""
    return _change(engine, email, disabled=disabled)


def set_role(engine: Engine, email: str, role: Role, clinic_id: str | None) -> User:
    """A new role and scope; sessions read them on every request, yet they are ended
    anyway, so no page rendered under the old role stays usable."""
    problem = _scope_problem(role, clinic_id)
    if problem:
        raise UserError(problem)
    return _change(engine, email, role=role.value, clinic_id=clinic_id)


def find_user(engine: Engine, email: str) -> User | None:
    with engine.connect() as connection:
        row = _find_row(connection, normal_email(email))
    return None if row is None else user_from_row(row)


def list_users(engine: Engine) -> list[User]:
    with engine.connect() as connection:
        rows = connection.execute(select(users).order_by(users.c.created_at)).mappings()
        return [user_from_row(row) for row in rows]


def credentials(connection: Connection, email: str) -> Credentials | None:
    row = _find_row(connection, normal_email(email)[:320])
    if row is None:
        return None
    return Credentials(
        user=user_from_row(row), password_hash=row["password_hash"], totp_sealed=row["totp_sealed"],
        totp_last_step=row["totp_last_step"],
        attempts=Attempts(row["failed_attempts"], _aware(row["locked_until"])),
    )  # fmt: skip


def _change(engine: Engine, email: str, **values: object) -> User:
    email = normal_email(email)
    with engine.begin() as connection:
        changed = connection.execute(
            update(users)
            .where(users.c.email == email)
            .values(**values, updated_at=datetime.now(UTC))
            .returning(users.c.user_id)
        ).first()
        if changed is None:
            raise UserError(f"no account for {email} (see `coreline user list`)")
        revoke_sessions(connection, changed[0])
        row = _find_row(connection, email)
    assert row is not None  # noqa: S101 - changed in this very transaction
    return user_from_row(row)


def _check(email: str, display_name: str, role: Role, clinic_id: str | None) -> None:
    if not _EMAIL.fullmatch(email):
        raise UserError(f"--email {email!r} is not an e-mail address")
    if not display_name.strip() or len(display_name) > _MAX_NAME:
        raise UserError(f"--name: 1 to {_MAX_NAME} characters")
    problem = _scope_problem(role, clinic_id)
    if problem:
        raise UserError(problem)


def _scope_problem(role: Role, clinic_id: str | None) -> str | None:
    problem = scope_problem(role, clinic_id)
    if problem:
        return problem.replace("token", "user")
    if clinic_id is not None and not _CLINIC_ID.match(clinic_id):
        return f"--clinic {clinic_id!r}: letters, digits, '-' and '_', e.g. clinic-7"
    return None


def _new_totp(box: SecretBox | None, role: Role) -> tuple[str | None, str | None]:
    if not needs_totp(role):
        return None, None
    if box is None:
        raise UserError(
            f"a {role.value} account needs TOTP, whose secret is sealed with the platform's "
            "key: set CORELINE_SECRET_KEY (32+ random characters, e.g. `openssl rand -hex 32`)"
        )
    secret = totp.new_secret()
    return secret, box.seal(secret)


def _find_row(connection: Connection, email: str) -> RowMapping | None:
    return connection.execute(select(users).where(users.c.email == email)).mappings().first()


def _aware(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
