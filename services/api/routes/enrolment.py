"""Enrolment and what a device asks for itself (docs/device-identity.md): the
manufacturer's claim for a serial, the device's one enrolment, its certificate
renewals and seal key rotations.  The device's routes take no token: a claim
secret, a factory certificate or a signature by its seal key is its proof."""

from datetime import datetime, timedelta
from typing import Annotated, Any, Final

from fastapi import APIRouter, Path, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field

from schemas.fields import DEVICE_ID_PATTERN
from schemas.identity_events import SERIAL_PATTERN
from services.api.deps import Context, DeviceManager, Store
from services.api.identity import (
    DeviceProof,
    EnrolmentRequest,
    IdentityConfig,
    Issued,
    enrol,
    issue_claim,
    renew_certificate,
    rotate_seal_key,
)
from services.api.problems import ERROR_RESPONSES

router = APIRouter(tags=["device identity"], responses=ERROR_RESPONSES)
DevicePath = Annotated[str, Path(pattern=DEVICE_ID_PATTERN, examples=["HP-000123"])]
Serial = Annotated[str, Field(pattern=SERIAL_PATTERN, examples=["SN-2026-000123"])]
Pem = Annotated[str, Field(min_length=1, max_length=16 * 1024)]
PublicKey = Annotated[
    str, Field(min_length=43, max_length=43, description="Base64url (no padding), 32 bytes.")
]
Signature = Annotated[str, Field(min_length=1, max_length=1024, description="Base64url.")]
KeyId = Annotated[str, Field(pattern=r"^[0-9a-f]{16}$")]
SignedAt = Annotated[
    str, Field(min_length=20, max_length=40, examples=["2026-11-24T09:31:07.250Z"])
]

_REFUSALS: Final[dict[int | str, dict[str, Any]]] = {
    409: ERROR_RESPONSES[400] | {"description": "Enrolled, decommissioned, or used already"},
    410: ERROR_RESPONSES[400] | {"description": "The claim expired"},
    503: ERROR_RESPONSES[400] | {"description": "The fleet CA is not there"},
}


def identity_settings(request: Request) -> IdentityConfig:
    found: IdentityConfig = request.app.state.identity
    return found


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class IssueClaim(_In):
    serial: Serial
    expires_in_days: Annotated[int, Field(ge=1, le=365)] | None = Field(
        default=None, description="Default: CORELINE_CLAIM_LIFETIME (30 days)."
    )


class ClaimOut(BaseModel):
    device_id: str
    serial: str
    claim_secret: str = Field(description="Shown this once: the platform keeps its SHA-256.")
    expires_at: datetime


class Enrol(_In):
    device_id: Annotated[str, Field(pattern=DEVICE_ID_PATTERN, examples=["HP-000123"])]
    serial: Serial
    csr: Pem = Field(description="PEM certificate signing request; subject CN = device_id.")
    seal_public_key: PublicKey
    claim_secret: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    factory_certificate: Pem | None = None
    factory_signature: Signature | None = Field(
        default=None,
        description="The factory certificate's key over the enrolment message "
        "(docs/device-identity.md).",
    )


class CertificateOut(BaseModel):
    device_id: str
    certificate: str = Field(description="The device's client certificate (PEM).")
    ca_certificates: str = Field(description="The fleet CA's chain (PEM): trust it for the broker.")
    fingerprint: str
    serial: str
    not_after: datetime


class Renew(_In):
    csr: Pem
    key_id: KeyId
    signed_at: SignedAt
    signature: Signature = Field(description="The seal key over the renewal message.")


class RotateSealKey(_In):
    new_public_key: PublicKey
    key_id: KeyId = Field(description="The seal key being replaced, which signs.")
    signed_at: SignedAt
    signature: Signature
    new_key_signature: Signature


class SealKeyOut(BaseModel):
    device_id: str
    key_id: str
    replaced: str


@router.post(
    "/devices/{device_id}/claims",
    status_code=status.HTTP_201_CREATED,
    summary="Issue a claim for a device's serial",
    responses=_REFUSALS,
)
def claim(
    who: DeviceManager,
    store: Store,
    request: Request,
    device_id: DevicePath,
    body: IssueClaim,
) -> ClaimOut:
    """A one-time claim secret the device enrols with, shown this once."""
    config = identity_settings(request)
    lifetime = (
        config.claim_lifetime
        if body.expires_in_days is None
        else timedelta(days=body.expires_in_days)
    )
    issued = issue_claim(store, device_id, body.serial, who.author, lifetime)
    return ClaimOut(
        device_id=issued.device_id,
        serial=issued.serial,
        claim_secret=issued.secret,
        expires_at=issued.expires_at,
    )


@router.post(
    "/enrolment",
    status_code=status.HTTP_201_CREATED,
    summary="Enrol a device (the device's own request)",
    responses=_REFUSALS | {200: {"description": "A retried enrolment, answered again"}},
)
def enrolment(
    api: Context, store: Store, request: Request, response: Response, body: Enrol
) -> CertificateOut:
    """With a claim secret, or a factory certificate and its key's signature; the
    certificate request's key becomes the device's MQTT client certificate and the
    seal key its registered seal key.  Once per device: a retry with the same key
    gets the same certificate (200), anything else a 409."""
    issued = enrol(
        store,
        api.engine,
        identity_settings(request),
        EnrolmentRequest(
            device_id=body.device_id,
            serial=body.serial,
            csr=body.csr,
            seal_public_key=body.seal_public_key,
            claim_secret=body.claim_secret,
            factory_certificate=body.factory_certificate,
            factory_signature=body.factory_signature,
        ),
    )
    if issued.replayed:
        response.status_code = status.HTTP_200_OK
    return certificate_out(issued)


@router.post(
    "/devices/{device_id}/certificate",
    status_code=status.HTTP_201_CREATED,
    summary="Renew a device's certificate (the device's own request)",
    responses=_REFUSALS,
)
def renewal(
    api: Context, store: Store, request: Request, device_id: DevicePath, body: Renew
) -> CertificateOut:
    """Signed by one of the device's unrevoked seal keys, within five minutes of the
    platform's clock; the certificate it replaces stays valid until it expires."""
    proof = DeviceProof(body.key_id, body.signed_at, body.signature)
    issued = renew_certificate(
        store, api.engine, identity_settings(request), device_id, body.csr, proof
    )
    return certificate_out(issued)


@router.post(
    "/devices/{device_id}/seal-key",
    status_code=status.HTTP_201_CREATED,
    summary="Rotate a device's seal key (the device's own request)",
    responses=_REFUSALS,
)
def seal_key_rotation(store: Store, device_id: DevicePath, body: RotateSealKey) -> SealKeyOut:
    """The new key is registered and the signing key revoked together (its seals up
    to now stay valid); both keys sign the rotation message."""
    proof = DeviceProof(body.key_id, body.signed_at, body.signature)
    new_key_id = rotate_seal_key(
        store, device_id, body.new_public_key, proof, body.new_key_signature
    )
    return SealKeyOut(device_id=device_id, key_id=new_key_id, replaced=body.key_id)


def certificate_out(issued: Issued) -> CertificateOut:
    return CertificateOut(
        device_id=issued.device_id,
        certificate=issued.certificate.decode(),
        ca_certificates=issued.ca_chain.decode(),
        fingerprint=issued.facts.fingerprint,
        serial=issued.facts.serial,
        not_after=issued.facts.not_after,
    )
