"""People's credentials as pure rules: argon2id hashes, TOTP windows and replay,
the lock-out fold, the per-address throttle, sealed secrets and origin checks."""

from datetime import UTC, datetime, timedelta

import pyotp
import pytest

from services.api.people import passwords, totp
from services.api.people.csrf import foreign_origin, token_for, token_matches
from services.api.people.lockout import (
    CLEAN,
    LOCK_FOR,
    MAX_FAILURES,
    AddressThrottle,
    after_failure,
)
from services.api.people.secret_box import SecretBox

NOW = datetime(2026, 11, 30, 12, 0, 15, tzinfo=UTC)


def test_a_password_verifies_only_against_its_own_argon2id_hash() -> None:
    """The stored hash is argon2id, never the password; only the right one verifies."""
    stored = passwords.hash_password("correct horse battery")
    assert stored.startswith("$argon2id$")
    assert "correct horse" not in stored
    assert passwords.verify_password(stored, "correct horse battery")
    assert not passwords.verify_password(stored, "correct horse battery!")
    assert not passwords.verify_password("not a hash", "correct horse battery")


def test_generated_passwords_differ_and_chosen_ones_have_a_minimum_length() -> None:
    """Generated passwords are long and unique; a short chosen one is named a problem."""
    made = {passwords.new_password() for _ in range(20)}
    assert len(made) == 20
    assert all(passwords.password_problem(password) is None for password in made)
    assert passwords.password_problem("short") is not None


@pytest.mark.parametrize("offset_s", [-30, 0, 30])
def test_totp_accepts_the_steps_around_now(offset_s: int) -> None:
    """A code from the previous, current or next 30-second step is accepted."""
    secret = totp.new_secret()
    code = pyotp.TOTP(secret).at(NOW + timedelta(seconds=offset_s))
    assert totp.accepted_step(secret, code, NOW, None) == (int(NOW.timestamp()) + offset_s) // 30


@pytest.mark.parametrize("offset_s", [-90, -60, 60, 90])
def test_totp_refuses_codes_outside_the_window(offset_s: int) -> None:
    """A code two or more steps away from now is refused."""
    secret = totp.new_secret()
    code = pyotp.TOTP(secret).at(NOW + timedelta(seconds=offset_s))
    assert totp.accepted_step(secret, code, NOW, None) is None


def test_a_totp_step_is_good_once() -> None:
    """A code whose step is not after the last accepted one is refused (no replay)."""
    secret = totp.new_secret()
    code = pyotp.TOTP(secret).at(NOW)
    step = totp.accepted_step(secret, code, NOW, None)
    assert step is not None
    assert totp.accepted_step(secret, code, NOW, step) is None
    assert totp.accepted_step(secret, "12345", NOW, None) is None
    assert totp.accepted_step(secret, "abcdef", NOW, None) is None


def test_the_otpauth_uri_names_the_issuer_and_account() -> None:
    """The enrolment URI an authenticator app reads carries the secret and the login."""
    secret = totp.new_secret()
    uri = totp.provisioning_uri(secret, "dana@clinic.example")
    parsed = pyotp.parse_uri(uri)
    assert parsed.secret == secret
    assert uri.startswith("otpauth://totp/Coreline:dana%40clinic.example")


def test_five_failures_lock_for_fifteen_minutes_and_start_a_new_count() -> None:
    """Four failures leave the account open; the fifth locks it until fifteen minutes
    later, with the count back to zero."""
    attempts = CLEAN
    for _ in range(MAX_FAILURES - 1):
        attempts = after_failure(attempts, NOW)
    assert not attempts.locked(NOW)
    attempts = after_failure(attempts, NOW)
    assert attempts.locked(NOW + LOCK_FOR - timedelta(seconds=1))
    assert not attempts.locked(NOW + LOCK_FOR)
    assert attempts.failures == 0


def test_an_address_is_throttled_after_its_failures_and_not_others() -> None:
    """Failures from one address, across any logins, block that address only."""
    throttle = AddressThrottle(limit=3, window_s=60)
    for _ in range(3):
        assert not throttle.blocked("10.0.0.1")
        throttle.failed("10.0.0.1")
    assert throttle.blocked("10.0.0.1")
    assert not throttle.blocked("10.0.0.2")


def test_a_sealed_secret_opens_only_with_its_key() -> None:
    """A TOTP secret sealed at rest is not in clear, and another key cannot open it."""
    box = SecretBox(b"a" * 32)
    sealed = box.seal("JBSWY3DPEHPK3PXP")
    assert "JBSWY3DPEHPK3PXP" not in sealed
    assert box.open(sealed) == "JBSWY3DPEHPK3PXP"
    assert SecretBox(b"b" * 32).open(sealed) is None


def test_csrf_tokens_are_bound_to_their_secret() -> None:
    """A token matches the cookie secret it was made from, and no other."""
    assert token_matches("secret-one", token_for("secret-one"))
    assert not token_matches("secret-two", token_for("secret-one"))
    assert not token_matches(None, token_for("secret-one"))
    assert token_for("secret-one") != "secret-one"


@pytest.mark.parametrize(
    ("headers", "foreign"),
    [
        ({}, False),
        ({"origin": "http://dash.example"}, False),
        ({"sec-fetch-site": "same-origin"}, False),
        ({"sec-fetch-site": "none"}, False),
        ({"origin": "https://evil.example"}, True),
        ({"origin": "null", "sec-fetch-site": "same-origin"}, False),
        ({"origin": "null", "sec-fetch-site": "cross-site"}, True),
        ({"sec-fetch-site": "cross-site"}, True),
        ({"sec-fetch-site": "same-site"}, True),
    ],
)
def test_requests_from_another_origin_are_named(headers: dict[str, str], foreign: bool) -> None:
    """Origin and Sec-Fetch-Site, when a browser sends them, must say this site."""
    assert (foreign_origin(headers, "dash.example") is not None) is foreign
