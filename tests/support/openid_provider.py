"""A real OpenID provider on loopback (the npm package ``oidc-provider`` run by node,
``tests/support/oidc/provider.mjs``) and helpers to sign in at it over HTTP."""

import re
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin

import httpx

from tests.support.platform_processes import wait_for_port
from tests.support.postgres import free_port

PROVIDER_DIR = Path(__file__).parent / "oidc"
_START_S = 30.0
_FORM = re.compile(r'<form[^>]*action="([^"]+)"[^>]*>(.*?)</form>', re.DOTALL)
_HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)"')


@dataclass(frozen=True, slots=True)
class OpenIdProvider:
    issuer: str
    client_id: str
    client_secret: str
    redirect_url: str


def install_provider() -> None:
    """``npm ci`` once, when ``node_modules`` is missing (the lock file pins it)."""
    if (PROVIDER_DIR / "node_modules" / "oidc-provider").is_dir():
        return
    npm = shutil.which("npm")
    assert npm is not None, "npm is missing: install Node.js 20 or later"
    subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund"], cwd=PROVIDER_DIR, check=True, timeout=300,
        capture_output=True,
    )  # fmt: skip


@contextmanager
def running_provider(redirect_url: str, log: Path) -> Iterator[OpenIdProvider]:
    install_provider()
    node = shutil.which("node")
    assert node is not None, "node is missing: install Node.js 20 or later"
    port = free_port()
    provider = OpenIdProvider(
        f"http://127.0.0.1:{port}", "coreline-dashboard", "provider-client-secret-0123456789",
        redirect_url,
    )  # fmt: skip
    with log.open("wb") as output:
        process = subprocess.Popen(
            [node, "provider.mjs", str(port), provider.client_id, provider.client_secret,
             redirect_url],
            cwd=PROVIDER_DIR, stdout=output, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        wait_for_port(process, port, log, _START_S)
        yield provider
    finally:
        process.terminate()
        process.wait(timeout=10)


def sign_in_at_provider(client: httpx.Client, start: str, login: str, stop_at: str) -> str:
    """From ``start`` (our ``/login/sso``), follow redirects and post the provider's
    sign-in and consent forms as a person would, until a redirect to ``stop_at`` (our
    callback); that URL, with its code and state."""
    url = start
    for _ in range(20):
        if url.startswith(stop_at):
            return url
        response = client.get(url)
        if response.is_redirect:
            url = urljoin(url, response.headers["location"])
            continue
        assert response.status_code == 200, response.text
        form = _FORM.search(response.text)
        assert form is not None, response.text
        fields = dict(_HIDDEN.findall(form.group(2)))
        if 'name="login"' in form.group(2):
            fields |= {"login": login, "password": "any password will do"}
        posted = client.post(urljoin(url, form.group(1)), data=fields)
        assert posted.is_redirect, posted.text
        url = urljoin(url, posted.headers["location"])
    raise AssertionError("the provider never sent the browser back")
