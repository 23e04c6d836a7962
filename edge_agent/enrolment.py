"""The device's identity on its own side (docs/device-identity.md): enrolment once,
with a claim secret or a factory certificate, and the files it leaves in the
device's identity directory, which ``coreline agent --identity-dir`` runs from.

Layout of the directory:

* ``tls.pem``: the MQTT client certificate followed by its private key (mode 0600):
  one file, so a renewal replaces both at once and a crash never pairs a key with
  another key's certificate;
* ``ca.crt``: the fleet CA's chain, which the broker's certificate must come from;
* ``seal.key``: the Ed25519 seal key (PEM, mode 0600);
* ``identity.json``: the device id, its serial and the platform's API address.

Keys are made and kept before a request is sent, so a request whose answer was lost
is sent again with the same keys, and the platform answers it again."""

import json
import logging
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from schemas.device_identity import enrolment_message
from schemas.seals import b64url

log = logging.getLogger(__name__)

TLS_FILE: Final = "tls.pem"
CA_FILE: Final = "ca.crt"
SEAL_KEY_FILE: Final = "seal.key"
RECORD_FILE: Final = "identity.json"
PENDING_TLS_KEY: Final = "tls.key.pending"
REQUEST_TIMEOUT_S: Final = 15.0


class EnrolmentError(Exception):
    """A request the platform refused, or could not be reached for; the message says
    which and why."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class IdentityFiles:
    """A device's identity directory (see the module doc)."""

    directory: Path

    @property
    def tls(self) -> Path:
        return self.directory / TLS_FILE

    @property
    def ca(self) -> Path:
        return self.directory / CA_FILE

    @property
    def seal_key(self) -> Path:
        return self.directory / SEAL_KEY_FILE

    @property
    def record_path(self) -> Path:
        return self.directory / RECORD_FILE

    @property
    def pending_tls_key(self) -> Path:
        return self.directory / PENDING_TLS_KEY

    @property
    def enrolled(self) -> bool:
        return self.tls.exists() and self.record_path.exists()

    def record(self) -> dict[str, Any]:
        try:
            found: dict[str, Any] = json.loads(self.record_path.read_text())
        except (OSError, ValueError) as error:
            raise EnrolmentError(f"{self.record_path}: {error}: enrol first") from None
        return found

    @property
    def device_id(self) -> str:
        return str(self.record()["device_id"])

    @property
    def api_url(self) -> str:
        return str(self.record()["api_url"])


@dataclass(frozen=True, slots=True)
class FactoryIdentity:
    """The certificate put on the handpiece at the factory, and its key (PEM)."""

    certificate: str
    key: bytes


@dataclass(frozen=True, slots=True)
class Enrolled:
    fingerprint: str
    not_after: datetime
    replayed: bool


def enrol_device(
    files: IdentityFiles,
    device_id: str,
    serial: str,
    api_url: str,
    *,
    claim_secret: str | None = None,
    factory: FactoryIdentity | None = None,
) -> Enrolled:
    """Enrol once: make the TLS and seal keys (or take those a lost answer left),
    send the request, and keep the certificate the platform issues."""
    from fleet_ca import certificate_facts, certificate_request, request_digest, sign  # noqa: PLC0415
    from seal_keys import SealKey  # noqa: PLC0415

    if files.enrolled:
        raise EnrolmentError(f"{files.directory} holds an enrolled identity already")
    files.directory.mkdir(parents=True, exist_ok=True)
    tls_key = pending_tls_key(files)
    if not files.seal_key.exists():
        write_secret(files.seal_key, SealKey.generate().pem())
    seal = SealKey.load(files.seal_key)
    csr = certificate_request(tls_key, device_id)
    body: dict[str, Any] = {"device_id": device_id, "serial": serial, "csr": csr,
                            "seal_public_key": seal.public_text}  # fmt: skip
    if claim_secret is not None:
        body["claim_secret"] = claim_secret
    if factory is not None:
        message = enrolment_message(device_id, serial, request_digest(csr), seal.public_text)
        body["factory_certificate"] = factory.certificate
        body["factory_signature"] = b64url(sign(factory.key, message))
    status, answer = post_json(f"{api_url.rstrip('/')}/api/v1/enrolment", body)
    keep_certificate(files, answer, tls_key)
    record = {"device_id": device_id, "serial": serial, "api_url": api_url,
              "enrolled_at": datetime.now(UTC).isoformat()}  # fmt: skip
    write_public(files.record_path, json.dumps(record, indent=2).encode() + b"\n")
    facts = certificate_facts(files.tls.read_bytes())
    log.info("%s enrolled: certificate %s until %s", device_id, facts.fingerprint, facts.not_after)
    return Enrolled(facts.fingerprint, facts.not_after, replayed=status == 200)


def pending_tls_key(files: IdentityFiles) -> bytes:
    """The key a certificate is being asked for: the one a lost answer left, else new."""
    from fleet_ca import write_new_key  # noqa: PLC0415

    if files.pending_tls_key.exists():
        return files.pending_tls_key.read_bytes()
    return write_new_key(files.pending_tls_key)


def keep_certificate(files: IdentityFiles, answer: dict[str, Any], key: bytes) -> None:
    """Replace ``tls.pem`` with the issued certificate and its key, and ``ca.crt`` with
    the chain, each whole; then the pending key is spent."""
    certificate, chain = answer.get("certificate"), answer.get("ca_certificates")
    if not isinstance(certificate, str) or not isinstance(chain, str):
        raise EnrolmentError("the platform's answer holds no certificate")
    write_public(files.ca, chain.encode())
    write_secret(files.tls, certificate.encode() + key)
    files.pending_tls_key.unlink(missing_ok=True)


def post_json(url: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """POST ``body``; the status and the JSON answer of a 2xx, else ``EnrolmentError``
    with the platform's own explanation (its problem details)."""
    if not url.startswith(("http://", "https://")):
        raise EnrolmentError(f"{url}: the API address must be http:// or https://")
    request = urllib.request.Request(  # noqa: S310 - the scheme is checked above
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Accept": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(  # noqa: S310 - the scheme is checked above
            request, timeout=REQUEST_TIMEOUT_S, context=ssl.create_default_context()
        ) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        raise EnrolmentError(f"{url}: {error.code}: {_detail(error)}", error.code) from None
    except (urllib.error.URLError, OSError, ValueError) as error:
        raise EnrolmentError(f"{url}: {error}") from None


def _detail(error: urllib.error.HTTPError) -> str:
    try:
        problem = json.loads(error.read())
    except (OSError, ValueError):
        return str(error.reason)
    return str(problem.get("detail") or problem.get("title") or error.reason)


def write_secret(path: Path, content: bytes) -> None:
    from fleet_ca import write_private  # noqa: PLC0415

    write_private(path, content)


def write_public(path: Path, content: bytes) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(content)
    partial.replace(path)
