"""OpenID Connect single sign-on: authorization code with PKCE (Authlib), the ID
token checked with joserfc (signature from the provider's JWKS, then issuer,
audience, expiry and the nonce this sign-in sent).

Who may sign in this way: only people with an account here already
(``coreline user create``), matched by the provider's *verified* e-mail address.
Their role and clinic come from that account, never from the provider's claims,
so a provider that lets anyone register cannot hand out access to the fleet.  The
provider is trusted for the second factor: TOTP is asked only on password sign-in.

Every call to the provider passes the egress policy (``services.egress``): a
provider on a private or loopback address must be named in ``CORELINE_EGRESS_ALLOW``.
"""

import base64
import json
import secrets
import threading
from dataclasses import asdict, dataclass, field
from ipaddress import ip_address
from typing import Any, Final, cast
from urllib.parse import urlsplit

import httpx2 as httpx
from authlib.integrations.httpx_client import OAuth2Client  # type: ignore[import-untyped]
from authlib.oauth2 import OAuth2Error  # type: ignore[import-untyped]
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet, KeySetSerialization

from services.egress import EgressGate, Limits
from services.egress.httpx_transport import EgressTransport

SCOPE: Final = "openid email profile"
_ALGORITHMS: Final = ("RS256", "PS256", "ES256", "EdDSA")
_TIMEOUT_S: Final = 10.0
_CLOCK_LEEWAY_S: Final = 60
_LIMITS: Final = Limits(total_s=_TIMEOUT_S, max_response_bytes=1024 * 1024)


class OidcError(Exception):
    """The provider cannot be reached or answered something unusable."""


class SignOnRefused(Exception):  # noqa: N818 - a refusal, shown to the person
    """This sign-on does not prove who the person is (state, nonce, token, claims)."""


@dataclass(frozen=True, slots=True)
class OidcClientSettings:
    issuer: str
    client_id: str
    client_secret: str
    redirect_url: str
    egress: EgressGate = field(default_factory=EgressGate)
    """What the provider's addresses are judged by (the operator's allow-list)."""

    def problem(self) -> str | None:
        """What makes these settings unusable, or ``None``."""
        for name, url in (("ISSUER", self.issuer), ("REDIRECT_URL", self.redirect_url)):
            parts = urlsplit(url)
            if parts.scheme not in {"https", "http"} or not parts.hostname:
                return f"CORELINE_OIDC_{name} must be an absolute URL, not {url!r}"
            if parts.scheme == "http" and not _loopback(parts.hostname):
                return f"CORELINE_OIDC_{name} must use https (http only on loopback): {url}"
        return None


@dataclass(frozen=True, slots=True)
class SignOnStart:
    """What one sign-on remembers between leaving for the provider and coming back."""

    state: str
    nonce: str
    code_verifier: str
    next: str

    def encode(self) -> str:
        return base64.urlsafe_b64encode(json.dumps(asdict(self)).encode()).decode()

    @classmethod
    def decode(cls, text: str | None) -> "SignOnStart":
        try:
            values = json.loads(base64.urlsafe_b64decode((text or "").encode()))
            return cls(**{key: str(values[key]) for key in cls.__dataclass_fields__})
        except (ValueError, KeyError, TypeError) as error:
            raise SignOnRefused("this sign-on was not started here, or took too long") from error


@dataclass(frozen=True, slots=True)
class Identity:
    subject: str
    email: str


class OidcClient:
    def __init__(self, settings: OidcClientSettings) -> None:
        self.settings = settings
        self._discovery: dict[str, Any] | None = None
        self._lock = threading.Lock()

    def start(self, next_path: str) -> tuple[str, SignOnStart]:
        """The provider's URL to send the browser to, and what to remember."""
        begun = SignOnStart(
            state=secrets.token_urlsafe(24), nonce=secrets.token_urlsafe(24),
            code_verifier=secrets.token_urlsafe(48), next=next_path,
        )  # fmt: skip
        with self._client() as client:
            url, _ = client.create_authorization_url(
                self._endpoint("authorization_endpoint"), state=begun.state,
                code_verifier=begun.code_verifier, nonce=begun.nonce,
            )  # fmt: skip
        return url, begun

    def finish(self, begun: SignOnStart, state: str, code: str) -> Identity:
        """The identity the provider vouches for, after checking everything it sent."""
        if not secrets.compare_digest(begun.state.encode(), state.encode()):
            raise SignOnRefused("the sign-on's state does not match the one this browser began")
        with self._client() as client:
            try:
                token = client.fetch_token(
                    self._endpoint("token_endpoint"), code=code,
                    code_verifier=begun.code_verifier, grant_type="authorization_code",
                )  # fmt: skip
            except OAuth2Error as error:
                raise SignOnRefused(f"the provider refused the code: {error.error}") from None
            except httpx.HTTPError as error:
                raise OidcError(f"the provider's token endpoint failed: {error}") from None
        id_token = token.get("id_token")
        if not isinstance(id_token, str):
            raise SignOnRefused("the provider sent no ID token")
        claims = self._verified_claims(id_token, begun.nonce)
        email = claims.get("email")
        if not isinstance(email, str) or claims.get("email_verified") is not True:
            raise SignOnRefused("the provider vouches for no verified e-mail address")
        return Identity(subject=str(claims["sub"]), email=email)

    def _verified_claims(self, id_token: str, nonce: str) -> dict[str, Any]:
        jwks = cast("KeySetSerialization", self._get_json(self._endpoint("jwks_uri")))
        try:
            keys = KeySet.import_key_set(jwks)
        except (JoseError, ValueError, KeyError) as error:
            raise OidcError(f"the provider's keys are unusable: {error}") from None
        try:
            decoded = jwt.decode(id_token, keys, algorithms=list(_ALGORITHMS))
            jwt.JWTClaimsRegistry(
                leeway=_CLOCK_LEEWAY_S,
                iss={"essential": True, "value": self._issuer()},
                aud={"essential": True, "value": self.settings.client_id},
                nonce={"essential": True, "value": nonce},
                exp={"essential": True},
                sub={"essential": True},
            ).validate(decoded.claims)
        except JoseError as error:
            raise SignOnRefused(f"the ID token does not hold: {error.description}") from None
        return dict(decoded.claims)

    def _client(self) -> OAuth2Client:
        return OAuth2Client(
            client_id=self.settings.client_id, client_secret=self.settings.client_secret,
            scope=SCOPE, redirect_uri=self.settings.redirect_url,
            code_challenge_method="S256", timeout=_TIMEOUT_S,
            transport=EgressTransport(self.settings.egress, _LIMITS),
        )  # fmt: skip

    def _issuer(self) -> str:
        return self.settings.issuer.rstrip("/")

    def _endpoint(self, name: str) -> str:
        value = self._metadata().get(name)
        if not isinstance(value, str):
            raise OidcError(f"the provider's discovery document has no {name}")
        return value

    def _metadata(self) -> dict[str, Any]:
        # Read on first use, not at start-up: the provider may come up after the API.
        with self._lock:
            if self._discovery is None:
                found = self._get_json(f"{self._issuer()}/.well-known/openid-configuration")
                if str(found.get("issuer", "")).rstrip("/") != self._issuer():
                    raise OidcError(
                        f"the provider calls itself {found.get('issuer')!r}, "
                        f"not CORELINE_OIDC_ISSUER {self.settings.issuer!r}"
                    )
                self._discovery = found
            return self._discovery

    def _get_json(self, url: str) -> dict[str, Any]:
        try:
            with httpx.Client(transport=EgressTransport(self.settings.egress, _LIMITS)) as client:
                response = client.get(url, timeout=_TIMEOUT_S)
            response.raise_for_status()
            found = response.json()
        except (httpx.HTTPError, ValueError) as error:
            raise OidcError(f"cannot read {url}: {error}") from None
        if not isinstance(found, dict):
            raise OidcError(f"{url} is not a JSON object")
        return found


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False
