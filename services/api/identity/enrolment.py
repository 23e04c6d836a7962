"""Claims and enrolment (docs/device-identity.md).

The manufacturer issues a claim for a registered device's serial: a one-time secret
shown once, of which the registry stream keeps only the SHA-256.  The device enrols
once, with that secret or with a factory certificate, sending a certificate request
and its seal public key; the fleet CA signs, and ``device.enrolled``,
``device.key_registered`` and ``device.certificate_issued`` are recorded together.

Every refusal changes nothing: the checks that can fail run before the CA signs, and
are made again under the registry stream's lock before anything is recorded, so two
enrolments racing with one claim record one enrolment."""

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from sqlalchemy import Engine

from fleet_ca import (
    CertificateFacts,
    CheckedRequest,
    FactoryCas,
    FleetCa,
    FleetCaError,
    RequestRefusal,
    certificate_facts,
    check_factory_certificate,
    check_request,
    request_digest,
)
from schemas import utc_text
from schemas.device_identity import DeviceIdentity, enrolment_message
from schemas.identity_events import (
    CERTIFICATE_ISSUED,
    CLAIM_ISSUED,
    ENROLLED,
    EnrolmentMethod,
)
from schemas.seals import ED25519, KEY_REGISTERED, from_b64url, key_id_of
from seal_keys import usable_public_key
from services.api.identity.records import Facts, device_author, load_identity, record
from services.api.identity.register import log_issued, logged
from services.api.identity.settings import IdentityConfig
from services.api.problems import Problem, conflict, unauthorized, unprocessable
from services.eventstore import EventStore, load_keyring

CLAIM_PREFIX: Final = "clm_"


@dataclass(frozen=True, slots=True)
class ClaimSecret:
    device_id: str
    serial: str
    secret: str
    """Shown once: the registry stream keeps only its SHA-256."""
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class EnrolmentRequest:
    device_id: str
    serial: str
    csr: str
    seal_public_key: str
    claim_secret: str | None = None
    factory_certificate: str | None = None
    factory_signature: str | None = None
    """Base64url: the factory certificate's key over ``enrolment_message``."""


@dataclass(frozen=True, slots=True)
class Issued:
    """A certificate handed to a device, with the chain it needs."""

    device_id: str
    certificate: bytes
    ca_chain: bytes
    facts: CertificateFacts
    replayed: bool = False
    """The answer to a retried request that was recorded already."""


def claim_digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def issue_claim(
    store: EventStore,
    device_id: str,
    serial: str,
    author: str,
    lifetime: timedelta,
    *,
    now: datetime | None = None,
) -> ClaimSecret:
    """A new claim for a registered device that never enrolled; it replaces an
    earlier claim (one that was lost, say)."""
    moment = now or datetime.now(UTC)
    secret = CLAIM_PREFIX + secrets.token_urlsafe(24)
    expires_at = moment + lifetime

    def decide(identity: DeviceIdentity) -> Facts:
        _refuse_retired(identity)
        if not identity.registered:
            raise conflict(f"{device_id} is not registered: register it first (POST /devices)")
        if identity.enrolled:
            raise conflict(f"{device_id} enrolled already, at {utc_text(_at(identity))}")
        data = {"serial": serial, "claim_digest": claim_digest(secret),
                "expires_at": utc_text(expires_at), "issued_by": author}  # fmt: skip
        return [(CLAIM_ISSUED, data)]

    record(store, device_id, decide, now=moment)
    return ClaimSecret(device_id, serial, secret, expires_at)


def enrol(
    store: EventStore,
    engine: Engine,
    config: IdentityConfig,
    request: EnrolmentRequest,
    *,
    now: datetime | None = None,
) -> Issued:
    moment = now or datetime.now(UTC)
    device_id = request.device_id
    identity = load_identity(store, device_id)
    method = _authenticate(identity, config, request, moment)
    checked = _checked_request(request)
    seal_key = _seal_key(request.seal_public_key)
    replay = _replayed(identity, engine, config, request, checked)
    if replay is not None:
        return replay
    _refuse_state(identity, method, moment)
    ca = _fleet_ca(config)
    issued = ca.issue_device(checked, lifetime=config.certificate_lifetime, now=moment)
    log_issued(engine, device_id, issued, moment)

    def decide(current: DeviceIdentity) -> Facts:
        if method is EnrolmentMethod.CLAIM_SECRET and current.claim != identity.claim:
            raise conflict(f"the claim of {device_id} changed meanwhile: enrol again")
        _refuse_state(current, method, moment)
        facts = issued.facts
        enrolled: dict[str, Any] = {"serial": request.serial,
                    "certificate_fingerprint": facts.fingerprint,
                    "certificate_serial": facts.serial, "not_after": utc_text(facts.not_after),
                    "method": method.value}  # fmt: skip
        recorded: list[tuple[str, dict[str, Any]]] = [(ENROLLED, enrolled)]
        if load_keyring(store, device_id).active(key_id_of(seal_key)) is None:
            recorded.append((KEY_REGISTERED, {
                "key_id": key_id_of(seal_key), "public_key": request.seal_public_key,
                "algorithm": ED25519, "registered_by": device_author(device_id, method.value),
            }))  # fmt: skip
        recorded.append((CERTIFICATE_ISSUED, {
            "certificate_fingerprint": facts.fingerprint, "certificate_serial": facts.serial,
            "not_after": utc_text(facts.not_after), "replaces": None,
        }))  # fmt: skip
        return recorded

    record(store, device_id, decide, now=moment)
    return Issued(device_id, issued.pem, ca.chain_pem, issued.facts)


def _authenticate(
    identity: DeviceIdentity, config: IdentityConfig, request: EnrolmentRequest, now: datetime
) -> EnrolmentMethod:
    """How the request proves it is the device's; 401 when it does not."""
    device_id = request.device_id
    if (request.claim_secret is None) == (request.factory_certificate is None):
        raise unauthorized("give either claim_secret or factory_certificate (with its signature)")
    if request.claim_secret is not None:
        claim = identity.claim
        if claim is None or not hmac.compare_digest(
            claim.digest, claim_digest(request.claim_secret)
        ):
            raise unauthorized(f"the claim secret is not the one issued for {device_id}")
        if claim.serial != request.serial:
            raise unauthorized(f"the claim of {device_id} was issued for another serial")
        return EnrolmentMethod.CLAIM_SECRET
    if config.factory_ca_file is None:
        raise unauthorized("no factory CA is configured here: enrol with a claim secret")
    if identity.claim is not None and identity.claim.serial != request.serial:
        raise unauthorized(f"{device_id} was registered with another serial")
    try:
        cas = FactoryCas.load(config.factory_ca_file)
        signature = from_b64url(request.factory_signature or "")
        message = enrolment_message(
            device_id, request.serial, request_digest(request.csr), request.seal_public_key
        )
    except FleetCaError as error:
        raise unprocessable(f"csr: {error}") from None
    except ValueError as error:
        raise unauthorized(f"factory_signature: {error}") from None
    checked = check_factory_certificate(
        cas, request.factory_certificate or "", signature, message, device_id,
        request.serial, now,
    )  # fmt: skip
    if isinstance(checked, RequestRefusal):
        raise unauthorized(checked.reason)
    return EnrolmentMethod.FACTORY_CERTIFICATE


def _refuse_state(identity: DeviceIdentity, method: EnrolmentMethod, now: datetime) -> None:
    device_id = identity.device_id
    _refuse_retired(identity)
    if identity.enrolled:
        raise conflict(
            f"{device_id} enrolled already, at {utc_text(_at(identity))}: a device enrols "
            "once, and a claim is single-use"
        )
    claim = identity.claim
    if method is EnrolmentMethod.CLAIM_SECRET and claim is not None and now >= claim.expires_at:
        raise Problem(
            410, "claim-expired", "Claim expired",
            f"the claim of {device_id} expired at {utc_text(claim.expires_at)}: ask the "
            "manufacturer for a new one",
        )  # fmt: skip


def _refuse_retired(identity: DeviceIdentity) -> None:
    retired = identity.decommissioned
    if retired is not None:
        raise conflict(
            f"{identity.device_id} was decommissioned at {utc_text(retired.at)} "
            f"({retired.reason}): it cannot be claimed, enrolled or assigned again"
        )


def _replayed(
    identity: DeviceIdentity,
    engine: Engine,
    config: IdentityConfig,
    request: EnrolmentRequest,
    checked: CheckedRequest,
) -> Issued | None:
    """The enrolment already recorded, when this request is its retry: the same
    device, key and serial (an answer lost on the way must not lock the device out)."""
    current = identity.current_certificate
    if not identity.enrolled or identity.decommissioned or current is None:
        return None
    if identity.serial != request.serial or current.replaces is not None:
        return None
    found = logged(engine, current.fingerprint)
    if found is None or found.key_digest != checked.key_digest:
        return None
    return Issued(
        identity.device_id, found.pem, _fleet_ca(config).chain_pem,
        _facts(found.pem), replayed=True,
    )  # fmt: skip


def _checked_request(request: EnrolmentRequest) -> CheckedRequest:
    checked = check_request(request.csr, request.device_id)
    if isinstance(checked, RequestRefusal):
        raise unprocessable(f"csr: {checked.reason}")
    return checked


def _seal_key(text: str) -> bytes:
    try:
        return usable_public_key(text)
    except ValueError as error:
        raise unprocessable(f"seal_public_key: {error}") from None


def _fleet_ca(config: IdentityConfig) -> FleetCa:
    try:
        return FleetCa.load(config.fleet_ca_dir)
    except FleetCaError as error:
        raise Problem(503, "unavailable", "Service unavailable", str(error)) from None


def _facts(pem: bytes) -> CertificateFacts:
    return certificate_facts(pem)


def _at(identity: DeviceIdentity) -> datetime:
    return identity.enrolled_at or datetime.now(UTC)
