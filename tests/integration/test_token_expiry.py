"""Machine tokens expire: ``coreline token create --expires-in`` (a year by default),
an expired token refused with 401 saying so, on both backends."""

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update

from services.api import Role, create_token, list_tokens, revoke_token
from services.api.tokens import DEFAULT_LIFETIME, api_token_expiry
from services.projections.read_store import ReadModelStore
from tests.support.api_client import api_client, bearer


@pytest.fixture(params=["sqlite_url", "postgres_url"])
def database_url(request: pytest.FixtureRequest) -> str:
    """A migrated database, once per backend."""
    url: str = request.getfixturevalue(request.param)
    return url


def _coreline(*args: str, database_url: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("CORELINE_")}
    env["CORELINE_DATABASE_URL"] = database_url
    argv = [sys.executable, "-m", "services", *args]
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120, check=False)


def test_an_expired_token_is_refused_as_expired(database_url: str) -> None:
    """A token works until its expiry, then gets 401 "expired"; a revoked one gets
    401 "revoked"."""
    read_models = ReadModelStore(database_url)
    engine = read_models.engine
    try:
        record, token = create_token(engine, Role.MANUFACTURER, None, "robot", timedelta(hours=1))
        _, other = create_token(engine, Role.MANUFACTURER, None, "robot 2")
        with api_client(database_url) as client:
            assert client.get("/api/v1/devices", headers=bearer(token)).status_code == 200
            with engine.begin() as connection:
                connection.execute(
                    update(api_token_expiry)
                    .where(api_token_expiry.c.token_id == record.token_id)
                    .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
                )
            expired = client.get("/api/v1/devices", headers=bearer(token))
            assert expired.status_code == 401
            assert "expired" in expired.json()["detail"]
            revoke_token(engine, list_tokens(engine)[-1].token_id)
            revoked = client.get("/api/v1/devices", headers=bearer(other))
            assert revoked.status_code == 401
            assert "revoked" in revoked.json()["detail"]
    finally:
        read_models.close()


def test_the_cli_sets_the_lifetime_and_keeps_the_token_on_its_last_line(
    sqlite_url: str,
) -> None:
    """``--expires-in 90d`` makes a token that lives 90 days, printed alone on the
    last line; without it a token lives a year; ``token list`` shows the expiry."""
    made = _coreline(
        "token", "create", "--role", "auditor", "--expires-in", "90d", database_url=sqlite_url
    )
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip().splitlines()[-1]
    assert token.startswith("clt_")
    default = _coreline("token", "create", "--role", "manufacturer", database_url=sqlite_url)
    assert default.returncode == 0, default.stderr
    read_models = ReadModelStore(sqlite_url)
    try:
        short, long = list_tokens(read_models.engine)
    finally:
        read_models.close()
    assert short.expires_at is not None
    assert long.expires_at is not None
    assert abs(short.expires_at - short.created_at - timedelta(days=90)) < timedelta(seconds=5)
    assert abs(long.expires_at - long.created_at - DEFAULT_LIFETIME) < timedelta(seconds=5)
    listed = _coreline("token", "list", database_url=sqlite_url)
    assert f"live to {short.expires_at:%Y-%m-%d}" in listed.stdout
    with api_client(sqlite_url) as client:
        assert client.get("/api/v1/sessions", headers=bearer(token)).status_code == 200


@pytest.mark.parametrize("lifetime", ["10y", "0d", "forever", "9999d"])
def test_the_cli_refuses_a_lifetime_it_cannot_give(sqlite_url: str, lifetime: str) -> None:
    """A lifetime that is not 1h to 1825d is refused with a message, and no token."""
    made = _coreline(
        "token", "create", "--role", "auditor", "--expires-in", lifetime, database_url=sqlite_url
    )
    assert made.returncode == 2
    assert "--expires-in" in made.stderr
    assert "clt_" not in made.stdout
