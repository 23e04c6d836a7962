"""Dashboard sign-in with named accounts: the session cookie's flags and contents,
the way back to the page asked for, no redirect off the server, sessions that end
on the server, CSRF refusals, TOTP, lock-out with one uniform refusal, and the
person named as the author of what they do."""

import re
from collections.abc import Iterator

import pytest
import sqlalchemy
from fastapi.testclient import TestClient

from services.api.deps import SESSION_COOKIE
from services.api.people import people_config, reset_password, secret_box, set_disabled
from services.api.people.csrf import PRE_SESSION_COOKIE
from services.api.people.lockout import MAX_FAILURES
from services.api.people.password_sign_in import REFUSAL
from services.projections.read_store import ReadModelStore
from tests.support.accounts import Account, create_accounts, csrf_token, sign_in
from tests.support.api_client import MASTER_KEY, api_client, bearer
from tests.support.api_world import World, build_world, project


@pytest.fixture
def world(sqlite_url: str) -> World:
    return build_world(sqlite_url, hours=2)


@pytest.fixture
def people(world: World) -> dict[str, Account]:
    return create_accounts(world.database_url)


@pytest.fixture
def client(world: World, people: dict[str, Account]) -> Iterator[TestClient]:
    with api_client(world.database_url) as opened:
        yield opened


@pytest.fixture
def engine(world: World) -> Iterator[sqlalchemy.Engine]:
    read_models = ReadModelStore(world.database_url)
    yield read_models.engine
    read_models.close()


def _refused_page(client: TestClient, response: object) -> str:
    location = response.headers["location"]  # type: ignore[attr-defined]
    assert location.startswith("/login?error=")
    return client.get(location).text


def test_pages_send_strangers_to_sign_in_and_back(
    client: TestClient, world: World, people: dict[str, Account]
) -> None:
    """A page asked for without a session leads to the sign-in form, which returns
    there after a good password, with an HttpOnly, SameSite=Lax cookie holding a
    random session id, never a bearer token."""
    asked = client.get("/devices/HP-000101", follow_redirects=False)
    assert asked.status_code == 303
    assert asked.headers["location"] == "/login?next=/devices/HP-000101"
    form = client.get(asked.headers["location"])
    assert 'name="next" value="/devices/HP-000101"' in form.text
    signed_in = sign_in(client, people["clinic_a"], "/devices/HP-000101")
    assert signed_in.status_code == 303
    assert signed_in.headers["location"] == "/devices/HP-000101"
    cookie = signed_in.headers["set-cookie"].lower()
    assert "httponly" in cookie
    assert "samesite=lax" in cookie
    session_id = client.cookies[SESSION_COOKIE]
    assert not session_id.startswith("clt_")
    assert session_id not in world.tokens.values()
    assert client.get("/devices/HP-000101").status_code == 200


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/x", "devices"])
def test_sign_in_never_redirects_off_the_server(
    client: TestClient, people: dict[str, Account], target: str
) -> None:
    """``next`` pointing anywhere but a path here sends the person to the fleet page."""
    assert sign_in(client, people["clinic_a"], target).headers["location"] == "/"


def test_a_clinic_cannot_open_another_clinics_pages(
    client: TestClient, people: dict[str, Account]
) -> None:
    """Another clinic's device, session and alert pages are 404 pages naming nothing;
    an auditor (signed in with a TOTP code) may not open the alerts page."""
    sign_in(client, people["clinic_a"])
    page = client.get("/devices/HP-000201")
    assert page.status_code == 404
    assert "HP-000201" not in page.text
    assert "clinic-bravo" not in page.text
    auditor = sign_in(client, people["auditor"])
    assert auditor.headers["location"] == "/"
    assert client.get("/alerts").status_code == 403


def test_logout_ends_the_session_on_the_server(
    client: TestClient, people: dict[str, Account]
) -> None:
    """After logging out, the old cookie replayed opens no page and no API call."""
    sign_in(client, people["clinic_a"])
    old = client.cookies[SESSION_COOKIE]
    page = client.get("/alerts")
    out = client.post("/logout", data={"csrf_token": csrf_token(page.text)}, follow_redirects=False)
    assert out.headers["location"] == "/login"
    client.cookies.set(SESSION_COOKIE, old)
    assert client.get("/alerts", follow_redirects=False).headers["location"].startswith("/login")
    api = client.get("/api/v1/devices")
    assert api.status_code == 401
    assert "session has ended" in api.json()["detail"]


def test_disabling_or_resetting_an_account_ends_its_sessions(
    client: TestClient, engine: sqlalchemy.Engine, people: dict[str, Account]
) -> None:
    """A password reset, then a disable, each end the sessions the account had."""
    box = secret_box(people_config(MASTER_KEY))
    sign_in(client, people["clinic_a"])
    assert client.get("/alerts").status_code == 200
    reset = reset_password(engine, box, people["clinic_a"].email)
    assert client.get("/alerts", follow_redirects=False).status_code == 303
    renewed = Account(people["clinic_a"].email, reset.password, None)
    assert sign_in(client, renewed).headers["location"] == "/"
    assert client.get("/alerts").status_code == 200
    set_disabled(engine, renewed.email)
    assert client.get("/alerts", follow_redirects=False).status_code == 303
    assert sign_in(client, renewed).headers["location"].startswith("/login?error=")


def test_a_foreign_origin_cannot_sign_a_browser_in(
    client: TestClient, people: dict[str, Account]
) -> None:
    """Login CSRF: a post from another origin, or one without the token its own form
    gave, is refused with 403 and no session, even with the right password."""
    form = client.get("/login")
    token = csrf_token(form.text)
    account = people["clinic_b"]
    data = {"email": account.email, "password": account.password, "csrf_token": token}
    foreign = client.post(
        "/login", data=data, headers={"Origin": "https://evil.example"}, follow_redirects=False
    )
    assert foreign.status_code == 403
    cross_site = client.post(
        "/login", data=data, headers={"Sec-Fetch-Site": "cross-site"}, follow_redirects=False
    )
    assert cross_site.status_code == 403
    no_token = client.post("/login", data={**data, "csrf_token": ""}, follow_redirects=False)
    assert no_token.status_code == 403
    client.cookies.delete(PRE_SESSION_COOKIE)
    no_cookie = client.post("/login", data=data, follow_redirects=False)
    assert no_cookie.status_code == 403
    assert SESSION_COOKIE not in client.cookies


def test_forms_and_cookie_api_calls_need_the_sessions_token(
    client: TestClient, world: World, people: dict[str, Account]
) -> None:
    """Acknowledging from the dashboard without the session's CSRF token, or from
    another site, is refused; with it, the alert is acknowledged with the person as
    its author.  A cookie-authenticated API change needs the token in a header."""
    sign_in(client, people["clinic_a"])
    page = client.get("/alerts")
    alert_id = re.search(r'action="/alerts/([^/"]+)/acknowledge"', page.text)
    assert alert_id is not None, "the world has an open alert of clinic A"
    action = f"/alerts/{alert_id.group(1)}/acknowledge"
    assert client.post(action, data={"note": "x"}).status_code == 403
    token = csrf_token(page.text)
    forged = client.post(
        action, data={"note": "x", "csrf_token": token},
        headers={"Origin": "https://evil.example"},
    )  # fmt: skip
    assert forged.status_code == 403
    done = client.post(action, data={"csrf_token": token, "note": "seen"}, follow_redirects=False)
    assert done.status_code == 303
    project(world.database_url)
    alert = client.get(f"/api/v1/alerts/{alert_id.group(1)}").json()
    assert alert["acknowledged_by"].startswith(
        f"Dana Ruiz <{people['clinic_a'].email}> (clinic user u_"
    )
    resolve = f"/api/v1/alerts/{alert_id.group(1)}/resolve"
    assert client.post(resolve, json={}).status_code == 403
    assert client.post(resolve, json={}, headers={"X-CSRF-Token": token}).status_code < 300


def test_every_refusal_reads_the_same_and_five_failures_lock_the_account(
    client: TestClient, engine: sqlalchemy.Engine, people: dict[str, Account]
) -> None:
    """An unknown login, a wrong password, a missing or wrong TOTP code and a locked
    account get the same words; the fifth failure locks the account, so even the
    right password is refused, until a reset lifts the lock."""
    maker = people["manufacturer"]
    stranger = Account("nobody@people.example", "whatever-password", None)
    pages = {
        "unknown": _refused_page(client, sign_in(client, stranger)),
        "no code": _refused_page(client, sign_in(client, maker, code="")),
        "bad code": _refused_page(client, sign_in(client, maker, code="000000")),
    }
    wrong = Account(maker.email, "not-the-password", maker.totp_secret)
    for _ in range(MAX_FAILURES - 2):
        pages["wrong password"] = _refused_page(client, sign_in(client, wrong, code=maker.code()))
    pages["locked"] = _refused_page(client, sign_in(client, maker, code=maker.code()))
    for name, text in pages.items():
        assert REFUSAL in text.replace("&#39;", "'"), name
    box = secret_box(people_config(MASTER_KEY))
    renewed = reset_password(engine, box, maker.email)
    unlocked = Account(maker.email, renewed.password, maker.totp_secret)
    assert sign_in(client, unlocked).headers["location"] == "/"


def test_a_totp_code_is_good_once(client: TestClient, people: dict[str, Account]) -> None:
    """The same code cannot sign in twice, even with the right password."""
    maker = people["manufacturer"]
    code = maker.fresh_code()
    assert sign_in(client, maker, code=code).headers["location"] == "/"
    client.cookies.clear()
    assert sign_in(client, maker, code=code).headers["location"].startswith("/login?error=")


def test_bearer_tokens_still_serve_machines(client: TestClient, world: World) -> None:
    """The API takes a machine's bearer token as before, with no cookie at all."""
    client.cookies.clear()
    assert client.get("/api/v1/devices", headers=bearer(world.tokens["manufacturer"])).is_success
