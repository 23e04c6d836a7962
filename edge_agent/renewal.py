"""The device keeps its identity for life by itself: it renews its certificate at two
thirds of its lifetime, and can rotate its seal key (docs/device-identity.md).  Both
requests are signed by its registered seal key, which does not expire, so a device
that sat switched off past its certificate's end still renews.

A renewed certificate replaces ``tls.pem`` whole; the MQTT connection in use keeps
going, and the next one presents the new certificate (``transport`` reads the file
again before each connection attempt).  A seal key rotation keeps the new key in
``seal.key.next`` until the platform has answered, so a lost answer is settled by
asking again."""

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final

from edge_agent.enrolment import (
    EnrolmentError,
    IdentityFiles,
    keep_certificate,
    pending_tls_key,
    post_json,
    write_secret,
)
from schemas import utc_text
from schemas.device_identity import renewal_message, rotation_message
from schemas.seals import b64url

log = logging.getLogger(__name__)

RENEW_AT: Final = 2 / 3
"""The fraction of a certificate's lifetime after which the device renews it."""
RETRY_EVERY: Final = timedelta(minutes=1)
NEXT_SEAL_KEY: Final = "seal.key.next"


@dataclass(frozen=True, slots=True)
class Renewed:
    fingerprint: str
    not_after: datetime


def renewal_due(files: IdentityFiles, now: datetime) -> bool:
    from fleet_ca import certificate_facts  # noqa: PLC0415

    facts = certificate_facts(files.tls.read_bytes())
    return now >= facts.renew_at(RENEW_AT)


def renew(files: IdentityFiles, now: datetime | None = None) -> Renewed:
    """A new TLS key and a certificate for it, asked for under the seal key's signature."""
    from fleet_ca import certificate_facts, certificate_request, request_digest  # noqa: PLC0415
    from seal_keys import SealKey  # noqa: PLC0415

    device_id, api_url = files.device_id, files.api_url
    seal = SealKey.load(files.seal_key)
    key = pending_tls_key(files)
    csr = certificate_request(key, device_id)
    signed_at = utc_text(now or datetime.now(UTC))
    signature = seal.private.sign(renewal_message(device_id, request_digest(csr), signed_at))
    body = {
        "csr": csr,
        "key_id": seal.key_id,
        "signed_at": signed_at,
        "signature": b64url(signature),
    }
    _, answer = post_json(f"{api_url.rstrip('/')}/api/v1/devices/{device_id}/certificate", body)
    keep_certificate(files, answer, key)
    facts = certificate_facts(files.tls.read_bytes())
    log.info("%s: certificate renewed: %s until %s", device_id, facts.fingerprint, facts.not_after)
    return Renewed(facts.fingerprint, facts.not_after)


def rotate_seal_key(files: IdentityFiles, now: datetime | None = None) -> str:
    """Replace the seal key: the platform registers the new one and revokes the old
    (whose seals so far stay valid).  The new key's id."""
    from seal_keys import SealKey  # noqa: PLC0415

    device_id, api_url = files.device_id, files.api_url
    pending = files.directory / NEXT_SEAL_KEY
    if not pending.exists():
        write_secret(pending, SealKey.generate().pem())
    old, new = SealKey.load(files.seal_key), SealKey.load(pending)
    signed_at = utc_text(now or datetime.now(UTC))
    message = rotation_message(device_id, new.public_text, signed_at)
    body = {"new_public_key": new.public_text, "key_id": old.key_id, "signed_at": signed_at,
            "signature": b64url(old.private.sign(message)),
            "new_key_signature": b64url(new.private.sign(message))}  # fmt: skip
    try:
        post_json(f"{api_url.rstrip('/')}/api/v1/devices/{device_id}/seal-key", body)
    except EnrolmentError as error:
        if not _rotated_before(error):
            raise
        log.warning("%s: the seal key rotation was recorded before: %s", device_id, error)
    pending.replace(files.seal_key)
    log.info("%s: seal key %s replaces %s", device_id, new.key_id, old.key_id)
    return new.key_id


@dataclass(slots=True)
class Renewal:
    """Renews the running agent's certificate when it falls due, on a thread of its
    own (the request must not hold up the link); retried every minute on failure."""

    files: IdentityFiles
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    _next_check: float = 0.0
    _running: threading.Thread | None = None
    renewed: list[Renewed] = field(default_factory=list)

    def tick(self) -> None:
        """Cheap: looks at the certificate at most once a second."""
        moment = time.monotonic()
        if moment < self._next_check or (self._running and self._running.is_alive()):
            return
        self._next_check = moment + 1.0
        try:
            due = renewal_due(self.files, self.clock())
        except (OSError, ValueError) as error:
            log.warning("cannot read the certificate in %s: %s", self.files.tls, error)
            return
        if due:
            self._running = threading.Thread(target=self._renew, name="renewal", daemon=True)
            self._running.start()

    def _renew(self) -> None:
        try:
            self.renewed.append(renew(self.files, self.clock()))
        except (EnrolmentError, OSError, ValueError) as error:
            log.warning("certificate renewal failed (retrying in %s): %s", RETRY_EVERY, error)
            self._next_check = time.monotonic() + RETRY_EVERY.total_seconds()


def _rotated_before(error: EnrolmentError) -> bool:
    """A rotation whose answer was lost, asked for again: the platform finds the new
    key registered already (409), or the old one revoked (401)."""
    text = str(error)
    return (error.status == 409 and "registered" in text) or (
        error.status == 401 and "not an unrevoked seal key" in text
    )
