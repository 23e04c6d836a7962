"""OpenID Connect single sign-on against a real provider (oidc-provider on
loopback) and ``coreline api`` serving over real HTTP: code + PKCE, the ID token's
nonce and the state checked, and only people with an account here let in."""

import base64
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

from services.api import Role
from services.api.dashboard.sign_in import SSO_COOKIE
from services.api.deps import SESSION_COOKIE
from services.api.people import SecretBox, create_user
from services.eventstore import upgrade_schema
from services.projections.read_store import ReadModelStore
from tests.support.api_world import CLINIC_A, World, build_world
from tests.support.openid_provider import (
    OpenIdProvider,
    running_provider,
    sign_in_at_provider,
)
from tests.support.platform_processes import serving_api
from tests.support.postgres import free_port

SECRET_KEY = "sso-test-secret-key-0123456789abcdef"  # noqa: S105 - a test key
DANA = "dana@clinic-alpha.example"


@dataclass(frozen=True)
class SignOnWorld:
    base_url: str
    provider: OpenIdProvider

    @property
    def callback(self) -> str:
        return f"{self.base_url}/login/sso/callback"


@contextmanager
def _serving_api(
    database_url: str, idp: OpenIdProvider, port: int, log: Path, egress_allow: str
) -> Iterator[None]:
    """``coreline api`` on ``port``, set up for single sign-on at ``idp``."""
    with serving_api(
        port, log, database_url=database_url, secret_key=SECRET_KEY, oidc_issuer=idp.issuer,
        oidc_client_id=idp.client_id, oidc_client_secret=idp.client_secret,
        oidc_redirect_url=idp.redirect_url, egress_allow=egress_allow,
    ):  # fmt: skip
        yield


@pytest.fixture(scope="module")
def sso(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SignOnWorld]:
    """A small world with one clinic account, the provider, and the API configured
    to use it (the provider's loopback address allowed by the egress policy), each
    its own process on loopback."""
    directory = tmp_path_factory.mktemp("sso")
    world: World = build_world(f"sqlite:///{directory / 'coreline.db'}", hours=1)
    read_models = ReadModelStore(world.database_url)
    box = SecretBox(SECRET_KEY.encode())
    create_user(read_models.engine, box, DANA, "Dana Ruiz", Role.CLINIC, CLINIC_A)
    read_models.close()
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    with (
        running_provider(f"{base_url}/login/sso/callback", directory / "provider.log") as idp,
        _serving_api(world.database_url, idp, port, directory / "api.log", "127.0.0.1"),
    ):
        yield SignOnWorld(base_url, idp)


@pytest.fixture
def browser() -> Iterator[httpx.Client]:
    """A cookie jar that follows nothing by itself."""
    with httpx.Client(timeout=10.0) as client:
        yield client


def test_a_provisioned_person_signs_on_and_sees_their_clinic(
    sso: SignOnWorld, browser: httpx.Client
) -> None:
    """Starting at ``/login/sso``, signing in at the provider and coming back with a
    code opens a session with the account's own role and clinic."""
    callback = sign_in_at_provider(browser, f"{sso.base_url}/login/sso", DANA, sso.callback)
    back = browser.get(callback)
    assert back.status_code == 303, back.text
    assert back.headers["location"] == "/"
    assert SESSION_COOKIE in browser.cookies
    fleet = browser.get(f"{sso.base_url}/")
    assert fleet.status_code == 200
    assert "HP-000101" in fleet.text
    assert "HP-000201" not in fleet.text
    assert f"clinic · {CLINIC_A}" in fleet.text.replace("&middot;", "·")


def test_a_person_without_an_account_is_refused(sso: SignOnWorld, browser: httpx.Client) -> None:
    """The provider vouching for someone with no account here opens no session."""
    callback = sign_in_at_provider(
        browser, f"{sso.base_url}/login/sso", "stranger@elsewhere.example", sso.callback
    )
    refused = browser.get(callback)
    assert refused.status_code == 403
    assert SESSION_COOKIE not in browser.cookies


def test_a_wrong_state_is_refused(sso: SignOnWorld, browser: httpx.Client) -> None:
    """A callback whose state is not the one this browser began with (a code slipped
    in from another sign-on) opens no session."""
    callback = sign_in_at_provider(browser, f"{sso.base_url}/login/sso", DANA, sso.callback)
    query = parse_qs(urlsplit(callback).query)
    forged = urlencode({"code": query["code"][0], "state": "not-the-state"})
    refused = browser.get(f"{sso.callback}?{forged}")
    assert refused.status_code == 403
    assert SESSION_COOKIE not in browser.cookies


def test_an_id_token_with_another_nonce_is_refused(sso: SignOnWorld, browser: httpx.Client) -> None:
    """With the state right but the remembered nonce not the one the ID token
    carries, the sign-on is refused after the code exchange."""
    callback = sign_in_at_provider(browser, f"{sso.base_url}/login/sso", DANA, sso.callback)
    begun = json.loads(base64.urlsafe_b64decode(browser.cookies[SSO_COOKIE]))
    begun["nonce"] = "another-nonce"
    browser.cookies.set(
        SSO_COOKIE, base64.urlsafe_b64encode(json.dumps(begun).encode()).decode(),
        domain="127.0.0.1", path="/login/sso",
    )  # fmt: skip
    refused = browser.get(callback)
    assert refused.status_code == 403
    assert SESSION_COOKIE not in browser.cookies


def test_no_sign_on_without_having_begun_here(sso: SignOnWorld, browser: httpx.Client) -> None:
    """A callback reaching a browser that never started a sign-on is refused."""
    callback = sign_in_at_provider(browser, f"{sso.base_url}/login/sso", DANA, sso.callback)
    browser.cookies.clear()
    assert browser.get(callback).status_code == 403
    assert SESSION_COOKIE not in browser.cookies


def test_the_login_page_offers_single_sign_on(sso: SignOnWorld, browser: httpx.Client) -> None:
    """With single sign-on set up, the login page links to it."""
    assert 'href="/login/sso?next=/"' in browser.get(f"{sso.base_url}/login").text


def test_the_provider_is_reached_only_as_the_egress_policy_allows(
    sso: SignOnWorld, browser: httpx.Client, tmp_path: Path
) -> None:
    """The calls to the provider pass the egress policy like every outbound call: an
    API whose allow-list does not name the provider's loopback address never reaches
    it, and says the provider cannot be reached."""
    database_url = f"sqlite:///{tmp_path / 'coreline.db'}"
    upgrade_schema(database_url)
    port = free_port()
    log = tmp_path / "api.log"
    with _serving_api(database_url, sso.provider, port, log, egress_allow="10.9.8.0/24"):
        refused = browser.get(f"http://127.0.0.1:{port}/login/sso")
    assert refused.status_code == 502
    assert "loopback" in log.read_text()
