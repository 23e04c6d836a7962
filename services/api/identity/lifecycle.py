"""A device's identity after enrolment: certificate renewal and seal key rotation,
which the device asks for itself, and certificate revocation and decommissioning,
which the manufacturer does (docs/device-identity.md).

The device proves a renewal or a rotation with a signature by a registered,
unrevoked seal key of its own, over a message naming the device, what it asks for
and when it signed (``schemas.device_identity``).  Not with its TLS certificate: the
seal key is the identity that lasts (its private half never leaves the secure
element, every batch is sealed by it, and it does not expire), so a handpiece that
sat in a drawer past its certificate's expiry still renews; and the API needs no
mutual TLS of its own."""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from sqlalchemy import Engine

from fleet_ca import FleetCa, FleetCaError, RequestRefusal, check_request, request_digest
from schemas import utc_text
from schemas.device_identity import DeviceIdentity, renewal_message, rotation_message
from schemas.identity_events import CERTIFICATE_ISSUED, CERTIFICATE_REVOKED, DECOMMISSIONED
from schemas.seals import ED25519, KEY_REGISTERED, KEY_REVOKED, key_id_of
from schemas.streams import device_stream
from seal_keys import PublicSealKey, SealKeyError, usable_public_key
from services.api.identity.enrolment import Issued
from services.api.identity.records import Facts, device_author, load_identity, record
from services.api.identity.register import log_issued
from services.api.identity.settings import IdentityConfig
from services.api.problems import Problem, conflict, not_found, unauthorized, unprocessable
from services.eventstore import EventStore, load_keyring

SIGNATURE_WINDOW: Final = timedelta(minutes=5)
"""How far a signed request's ``signed_at`` may be from the platform's clock."""


@dataclass(frozen=True, slots=True)
class DeviceProof:
    """A device's signature over its request, by one of its seal keys."""

    key_id: str
    signed_at: str
    signature: str


def renew_certificate(
    store: EventStore,
    engine: Engine,
    config: IdentityConfig,
    device_id: str,
    csr: str,
    proof: DeviceProof,
    *,
    now: datetime | None = None,
) -> Issued:
    """A new certificate for the request's key, replacing the device's current one
    (which stays valid until it expires or is revoked)."""
    moment = now or datetime.now(UTC)
    identity = load_identity(store, device_id)
    _refuse_retired(identity)
    try:
        digest = request_digest(csr)
    except FleetCaError as error:
        raise unprocessable(f"csr: {error}") from None
    _check_proof(store, device_id, proof, renewal_message(device_id, digest, proof.signed_at),
                 moment)  # fmt: skip
    checked = check_request(csr, device_id)
    if isinstance(checked, RequestRefusal):
        raise unprocessable(f"csr: {checked.reason}")
    if not identity.enrolled:
        raise conflict(f"{device_id} has not enrolled: it enrols first (POST /enrolment)")
    try:
        ca = FleetCa.load(config.fleet_ca_dir)
    except FleetCaError as error:
        raise Problem(503, "unavailable", "Service unavailable", str(error)) from None
    issued = ca.issue_device(checked, lifetime=config.certificate_lifetime, now=moment)
    log_issued(engine, device_id, issued, moment)

    def decide(current: DeviceIdentity) -> Facts:
        _refuse_retired(current)
        replaced = current.current_certificate
        facts = issued.facts
        return [(CERTIFICATE_ISSUED, {
            "certificate_fingerprint": facts.fingerprint, "certificate_serial": facts.serial,
            "not_after": utc_text(facts.not_after),
            "replaces": None if replaced is None else replaced.fingerprint,
        })]  # fmt: skip

    record(store, device_id, decide, now=moment)
    return Issued(device_id, issued.pem, ca.chain_pem, issued.facts)


def rotate_seal_key(
    store: EventStore,
    device_id: str,
    new_public_key: str,
    proof: DeviceProof,
    new_key_signature: str,
    *,
    now: datetime | None = None,
) -> str:
    """Register ``new_public_key`` and revoke the key that signed ``proof``, together;
    the new key's id.  Both keys sign the same message: the old one vouches for the
    new, the new proves it is held."""
    moment = now or datetime.now(UTC)
    try:
        raw = usable_public_key(new_public_key)
    except ValueError as error:
        raise unprocessable(f"new_public_key: {error}") from None
    new_key_id = key_id_of(raw)
    message = rotation_message(device_id, new_public_key, proof.signed_at)
    _refuse_retired(load_identity(store, device_id))
    _check_proof(store, device_id, proof, message, moment)
    if not PublicSealKey(raw).verifies(message, new_key_signature):
        raise unauthorized("new_key_signature does not verify with the new key")

    def decide(current: DeviceIdentity) -> Facts:
        _refuse_retired(current)
        keyring = load_keyring(store, device_id)
        if new_key_id in keyring.keys:
            raise conflict(f"key {new_key_id} is registered for {device_id} already")
        if keyring.active(proof.key_id) is None:
            raise conflict(f"key {proof.key_id} of {device_id} was revoked meanwhile")
        sealed = [seal.seq for seal in store.read_seals(device_stream(device_id))
                  if seal.key_id == proof.key_id]  # fmt: skip
        author = device_author(device_id, "seal key rotation")
        return [
            (KEY_REGISTERED, {"key_id": new_key_id, "public_key": new_public_key,
                              "algorithm": ED25519, "registered_by": author}),
            (KEY_REVOKED, {"key_id": proof.key_id, "reason": f"rotated to {new_key_id}",
                           "revoked_by": author, "sealed_through": max(sealed, default=0)}),
        ]  # fmt: skip

    record(store, device_id, decide, now=moment)
    return new_key_id


def revoke_certificate(
    store: EventStore,
    device_id: str,
    fingerprint: str,
    reason: str,
    author: str,
    *,
    now: datetime | None = None,
) -> None:
    """Record the revocation; the caller then publishes the CRL (``publish_crl``)."""

    def decide(current: DeviceIdentity) -> Facts:
        certificate = current.certificate(fingerprint)
        if certificate is None:
            raise not_found("certificate")
        if certificate.revoked:
            raise conflict(f"certificate {fingerprint} of {device_id} is revoked already")
        return [(CERTIFICATE_REVOKED, _revocation(certificate.fingerprint, certificate.serial,
                                                  reason, author))]  # fmt: skip

    record(store, device_id, decide, now=now)


def decommission(
    store: EventStore,
    device_id: str,
    reason: str,
    author: str,
    *,
    now: datetime | None = None,
) -> int:
    """Retire the device: ``device.decommissioned`` and the revocation of every
    certificate it still holds, together; how many were revoked.  Its history stays
    as it is, and verifiable; the gateway refuses whatever it sends from now on."""
    revoked = 0

    def decide(current: DeviceIdentity) -> Facts:
        nonlocal revoked
        _refuse_retired(current)
        revocations = [
            (CERTIFICATE_REVOKED, _revocation(
                certificate.fingerprint, certificate.serial, f"decommissioned: {reason}", author,
            ))
            for certificate in current.unrevoked()
        ]  # fmt: skip
        revoked = len(revocations)
        return [(DECOMMISSIONED, {"reason": reason, "decommissioned_by": author}), *revocations]

    record(store, device_id, decide, now=now)
    return revoked


def refuse_if_decommissioned(store: EventStore, device_id: str) -> None:
    """409 for a device that was decommissioned: it cannot be given to a clinic."""
    _refuse_retired(load_identity(store, device_id))


def _revocation(fingerprint: str, serial: str, reason: str, author: str) -> dict[str, Any]:
    return {"certificate_fingerprint": fingerprint, "certificate_serial": serial,
            "reason": reason[:2000], "revoked_by": author}  # fmt: skip


def _check_proof(
    store: EventStore, device_id: str, proof: DeviceProof, message: bytes, now: datetime
) -> None:
    key = load_keyring(store, device_id).active(proof.key_id)
    if key is None:
        raise unauthorized(f"key {proof.key_id} is not an unrevoked seal key of {device_id}")
    try:
        signed_at = datetime.fromisoformat(proof.signed_at.replace("Z", "+00:00"))
    except ValueError:
        raise unprocessable("signed_at: RFC 3339 UTC, e.g. 2026-11-24T09:31:07.250Z") from None
    if signed_at.tzinfo is None or abs(now - signed_at) > SIGNATURE_WINDOW:
        raise unauthorized(
            f"signed_at {proof.signed_at} is more than {SIGNATURE_WINDOW} from the platform's "
            f"clock ({utc_text(now)}): sign again"
        )
    try:
        verified = PublicSealKey(key.public_key).verifies(message, proof.signature)
    except SealKeyError:
        verified = False
    if not verified:
        raise unauthorized(f"the signature does not verify with seal key {proof.key_id}")


def _refuse_retired(identity: DeviceIdentity) -> None:
    retired = identity.decommissioned
    if retired is not None:
        raise conflict(
            f"{identity.device_id} was decommissioned at {utc_text(retired.at)} ({retired.reason})"
        )
