"""What the API and the dashboard show of a device's identity: its fold, summed up
for people (claim state, the certificate in use and when it expires, every
certificate with its status, decommissioning)."""

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict
from sqlalchemy import Connection, select

from schemas.device_identity import ClaimState, DeviceCertificate, DeviceIdentity
from services.api.identity.records import load_identity
from services.api.queries.tables import READ
from services.eventstore.keyrings import StreamRead

CertificateStatus = Literal["valid", "expired", "revoked"]


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class CertificateOut(_Out):
    fingerprint: str
    serial: str
    not_after: datetime
    issued_at: datetime
    replaces: str | None
    status: CertificateStatus
    revoked_at: datetime | None
    revocation_reason: str | None


class IdentityOut(_Out):
    device_id: str
    registered: bool
    serial: str | None
    """The serial the device enrolled with, else the one its claim names."""
    claim: ClaimState
    claim_expires_at: datetime | None
    enrolled_at: datetime | None
    enrolment_method: str | None
    certificate: CertificateOut | None
    """The certificate in use: the newest not revoked."""
    certificates: list[CertificateOut]
    decommissioned_at: datetime | None
    decommission_reason: str | None
    decommissioned_by: str | None


def certificate_out(certificate: DeviceCertificate, now: datetime) -> CertificateOut:
    status: CertificateStatus = (
        "revoked" if certificate.revoked else "valid" if certificate.valid_at(now) else "expired"
    )
    return CertificateOut(
        fingerprint=certificate.fingerprint,
        serial=certificate.serial,
        not_after=certificate.not_after,
        issued_at=certificate.issued_at,
        replaces=certificate.replaces,
        status=status,
        revoked_at=certificate.revoked_at,
        revocation_reason=certificate.revocation_reason,
    )


def identity_out(identity: DeviceIdentity, now: datetime) -> IdentityOut:
    current = identity.current_certificate
    retired = identity.decommissioned
    claim = identity.claim
    return IdentityOut(
        device_id=identity.device_id,
        registered=identity.registered,
        serial=identity.serial or (claim.serial if claim else None),
        claim=identity.claim_state(now),
        claim_expires_at=claim.expires_at if claim else None,
        enrolled_at=identity.enrolled_at,
        enrolment_method=identity.method.value if identity.method else None,
        certificate=certificate_out(current, now) if current else None,
        certificates=[certificate_out(item, now) for item in reversed(identity.certificates)],
        decommissioned_at=retired.at if retired else None,
        decommission_reason=retired.reason if retired else None,
        decommissioned_by=retired.by if retired else None,
    )


def registered_identities(
    connection: Connection, store: StreamRead, now: datetime, after: str | None, limit: int
) -> list[IdentityOut]:
    """Registered devices in id order after ``after``, at most ``limit + 1`` (the
    extra one says there is a next page), each with its identity."""
    registry = READ.registry
    query = select(registry.c.device_id).where(registry.c.registered.is_(True))
    if after is not None:
        query = query.where(registry.c.device_id > after)
    rows = connection.execute(query.order_by(registry.c.device_id).limit(limit + 1))
    return [identity_out(load_identity(store, row[0]), now) for row in rows]
