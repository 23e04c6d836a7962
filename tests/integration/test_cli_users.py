"""``coreline user``: accounts made, listed, disabled, reset and re-scoped from the
command line, and signing in to the dashboard with what it printed."""

import os
import subprocess
import sys
from collections.abc import Iterator

import pyotp
import pytest
from fastapi.testclient import TestClient

from tests.support.accounts import Account, sign_in
from tests.support.api_client import MASTER_KEY, api_client


def _coreline(*args: str, database_url: str, **settings: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("CORELINE_")}
    env |= {"CORELINE_DATABASE_URL": database_url} | settings
    argv = [sys.executable, "-m", "services", *args]
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120, check=False)


def _printed(output: str, name: str) -> str:
    lines = [line for line in output.splitlines() if line.startswith(f"{name}: ")]
    assert len(lines) == 1, output
    return lines[0].removeprefix(f"{name}: ")


@pytest.fixture
def client(sqlite_url: str) -> Iterator[TestClient]:
    with api_client(sqlite_url) as opened:
        yield opened


def test_a_clinic_account_made_on_the_command_line_signs_in_until_disabled(
    sqlite_url: str, client: TestClient
) -> None:
    """``user create`` prints a password that signs in; ``user disable`` ends that;
    ``user reset-password`` prints a new one and the old one stops working."""
    made = _coreline(
        "user", "create", "--email", "Dana@Clinic.example", "--name", "Dana Ruiz",
        "--role", "clinic", "--clinic", "clinic-7", database_url=sqlite_url,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    dana = Account("dana@clinic.example", _printed(made.stdout, "password"), None)
    assert "totp:" not in made.stdout
    assert sign_in(client, dana).headers["location"] == "/"
    listed = _coreline("user", "list", database_url=sqlite_url)
    assert "clinic-7" in listed.stdout
    assert "dana@clinic.example" in listed.stdout
    reset = _coreline("user", "reset-password", "dana@clinic.example", database_url=sqlite_url)
    assert reset.returncode == 0, reset.stderr
    assert sign_in(client, dana).headers["location"].startswith("/login?error=")
    renewed = Account(dana.email, _printed(reset.stdout, "password"), None)
    assert sign_in(client, renewed).headers["location"] == "/"
    disabled = _coreline("user", "disable", "dana@clinic.example", database_url=sqlite_url)
    assert disabled.returncode == 0, disabled.stderr
    assert client.get("/sessions", follow_redirects=False).status_code == 303
    assert sign_in(client, renewed).headers["location"].startswith("/login?error=")


def test_a_manufacturer_account_needs_the_key_and_enrols_totp(
    sqlite_url: str, client: TestClient
) -> None:
    """Without a key to seal the TOTP secret, ``user create`` refuses and says which
    variable to set; with it, it prints the otpauth URI, whose codes sign in."""
    args = ("user", "create", "--email", "ops@maker.example", "--name", "Ops",
            "--role", "manufacturer")  # fmt: skip
    refused = _coreline(*args, database_url=sqlite_url)
    assert refused.returncode == 2
    assert "CORELINE_SECRET_KEY" in refused.stderr
    made = _coreline(
        *args, database_url=sqlite_url, CORELINE_WEBHOOK_MASTER_KEY=MASTER_KEY.decode()
    )
    assert made.returncode == 0, made.stderr
    secret = pyotp.parse_uri(_printed(made.stdout, "totp")).secret
    ops = Account("ops@maker.example", _printed(made.stdout, "password"), secret)
    assert sign_in(client, ops, code="").headers["location"].startswith("/login?error=")
    assert sign_in(client, ops).headers["location"] == "/"


def test_set_role_changes_what_the_account_sees(sqlite_url: str) -> None:
    """``user set-role`` re-scopes an account and refuses a scope the role cannot
    have, naming the flag to fix."""
    _coreline(
        "user", "create", "--email", "sam@clinic.example", "--name", "Sam",
        "--role", "clinic", "--clinic", "clinic-7", database_url=sqlite_url,
    )  # fmt: skip
    moved = _coreline(
        "user", "set-role", "sam@clinic.example", "--role", "clinic", "--clinic", "clinic-8",
        database_url=sqlite_url,
    )  # fmt: skip
    assert moved.returncode == 0, moved.stderr
    assert "clinic-8" in moved.stdout
    wrong = _coreline(
        "user", "set-role", "sam@clinic.example", "--role", "clinic", database_url=sqlite_url
    )
    assert wrong.returncode == 2
    assert "--clinic" in wrong.stderr
