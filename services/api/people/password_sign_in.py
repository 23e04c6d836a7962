"""Signing in with a password (and a TOTP code where the role needs one).

Every refusal is the same ``SignInRefused`` with the same words, and costs one
argon2 verification whether the login exists, is locked, disabled, or the password
or code is wrong: neither the answer nor its timing says which accounts exist.
"""

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from sqlalchemy import Connection, Engine, or_, update

from services.api.access import Principal
from services.api.people import passwords, totp
from services.api.people.account import needs_totp
from services.api.people.lockout import CLEAN, AddressThrottle, Attempts, after_failure
from services.api.people.secret_box import SecretBox
from services.api.people.tables import users
from services.api.people.users import Credentials, credentials

REFUSAL: Final = (
    "Those sign-in details are not right, or the account is locked for a while. "
    "Try again, or ask your administrator."
)


@dataclass(frozen=True, slots=True)
class SignInRefused:
    message: str = REFUSAL


@dataclass(frozen=True, slots=True)
class PasswordSignIn:
    engine: Engine
    box: SecretBox | None
    throttle: AddressThrottle

    def attempt(
        self, email: str, password: str, code: str, address: str, now: datetime | None = None
    ) -> Principal | SignInRefused:
        now = now or datetime.now(UTC)
        with self.engine.connect() as connection:
            found = credentials(connection, email)
        if self.throttle.blocked(address) or found is None or found.password_hash is None:
            passwords.burn_time(password)
            self.throttle.failed(address)
            return SignInRefused()
        good_password = passwords.verify_password(found.password_hash, password)
        step = self._totp_step(found, code, now)
        usable = not found.user.disabled and not found.attempts.locked(now)
        if not (usable and good_password and step is not False):
            if usable:
                self._record(found.user.user_id, after_failure(found.attempts, now))
            self.throttle.failed(address)
            return SignInRefused()
        # A bool is an int too: only a real step (not "no code needed") is spent.
        if not isinstance(step, bool) and not self._spend_code(found.user.user_id, step):
            self.throttle.failed(address)
            return SignInRefused()
        if found.attempts != CLEAN:
            self._record(found.user.user_id, CLEAN)
        return found.user.principal()

    def _totp_step(self, found: Credentials, code: str, now: datetime) -> int | bool:
        """The accepted step; ``True`` when the role needs no code; ``False`` when
        the code is wrong, reused, or cannot be checked."""
        if not needs_totp(found.user.role):
            return True
        if found.totp_sealed is None or self.box is None:
            return False
        secret = self.box.open(found.totp_sealed)
        if secret is None:
            return False
        step = totp.accepted_step(secret, code, now, found.totp_last_step)
        return False if step is None else step

    def _spend_code(self, user_id: str, step: int) -> bool:
        """Mark the step used; ``False`` when another sign-in spent it first."""
        with self.engine.begin() as connection:
            changed = connection.execute(
                update(users)
                .where(
                    users.c.user_id == user_id,
                    or_(users.c.totp_last_step.is_(None), users.c.totp_last_step < step),
                )
                .values(totp_last_step=step)
            ).rowcount
        return changed == 1

    def _record(self, user_id: str, attempts: Attempts) -> None:
        with self.engine.begin() as connection:
            _write_attempts(connection, user_id, attempts)


def _write_attempts(connection: Connection, user_id: str, attempts: Attempts) -> None:
    connection.execute(
        update(users)
        .where(users.c.user_id == user_id)
        .values(failed_attempts=attempts.failures, locked_until=attempts.locked_until)
    )
