"""People for dashboard tests: an account per role of the API world, and signing in
through the real login form (CSRF token and all), as a browser would."""

import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx2
import pyotp
from fastapi.testclient import TestClient

from services.api import Role
from services.api.people import create_user, people_config, secret_box
from services.projections.read_store import ReadModelStore
from tests.support.api_client import MASTER_KEY
from tests.support.api_world import CLINIC_A, CLINIC_B

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
_STEP_S = 30
_last_step: dict[str, int] = {}
"""The last TOTP step each account spent, by its secret (accounts of the same e-mail
in different tests' databases have their own): the platform accepts a step once."""


@dataclass(frozen=True, slots=True)
class Account:
    email: str
    password: str
    totp_secret: str | None

    def code(self, at: datetime | None = None) -> str:
        """The authenticator's code now (or at ``at``); empty for roles without TOTP."""
        if self.totp_secret is None:
            return ""
        return pyotp.TOTP(self.totp_secret).at(at or datetime.now(UTC))

    def fresh_code(self) -> str:
        """A code of a step this account has not spent yet (the platform accepts the
        steps around now, each once), waiting for the next step when all are spent."""
        if self.totp_secret is None:
            return ""
        current = int(time.time()) // _STEP_S
        # Never the step before now: a step boundary passing before the server checks
        # it would put that code outside the window the platform accepts.
        step = max(current, _last_step.get(self.totp_secret, current - 1) + 1)
        while step > int(time.time()) // _STEP_S + 1:
            time.sleep(1)
        _last_step[self.totp_secret] = step
        return pyotp.TOTP(self.totp_secret).at(step * _STEP_S)


WORLD_PEOPLE = {
    "manufacturer": ("Mara Fleet", Role.MANUFACTURER, None),
    "clinic_a": ("Dana Ruiz", Role.CLINIC, CLINIC_A),
    "clinic_b": ("Ben Ortiz", Role.CLINIC, CLINIC_B),
    "auditor": ("Ada Audit", Role.AUDITOR, None),
    "auditor_a": ("Alex Audit", Role.AUDITOR, CLINIC_A),
}
"""By the world's token names: display name, role, clinic."""


def create_accounts(database_url: str, key: bytes = MASTER_KEY) -> dict[str, Account]:
    """An account per role of the API world, its TOTP sealed as the API will open it
    (``key`` is the master key the API is given)."""
    box = secret_box(people_config(key))
    read_models = ReadModelStore(database_url)
    engine = read_models.engine
    try:
        accounts = {}
        for name, (display, role, clinic) in WORLD_PEOPLE.items():
            email = f"{name.replace('_', '-')}@people.example"
            enrolment = create_user(engine, box, email, display, role, clinic)
            secret = None
            if enrolment.totp_uri:
                secret = pyotp.parse_uri(enrolment.totp_uri).secret
            accounts[name] = Account(email, enrolment.password, secret)
        return accounts
    finally:
        read_models.close()


def csrf_token(html: str) -> str:
    found = _CSRF.search(html)
    assert found is not None, "the page carries no CSRF token"
    return found.group(1)


def sign_in(
    client: TestClient, account: Account, next_path: str = "/", *, code: str | None = None
) -> httpx2.Response:
    """Post the login form as its page gave it; the response (a redirect)."""
    form = client.get("/login", params={"next": next_path})
    return client.post(
        "/login",
        data={
            "email": account.email, "password": account.password,
            "code": account.fresh_code() if code is None else code, "next": next_path,
            "csrf_token": csrf_token(form.text),
        },
        follow_redirects=False,
    )  # fmt: skip
