"""A device's identity for life, as platform facts in its registry stream
(``registry:{device_id}``): the claim the manufacturer issued for its serial, its
enrolment, every MQTT client certificate the fleet CA issued or revoked, and its
decommissioning (docs/device-identity.md).

Enrolment is recorded as ``device.enrolled``, ``device.key_registered`` (its seal
key, DESIGN §4.1) and ``device.certificate_issued``, appended together, so seal
checks and the standalone verifier read keys exactly as before.  A claim secret is
never recorded, only its SHA-256; a certificate only by its fingerprint (SHA-256 of
its DER), serial and expiry: no field can hold a secret or a private key.
"""

from enum import StrEnum
from typing import Annotated, Final, Literal

from pydantic import BaseModel, StringConstraints

from schemas.envelope import EventEnvelope
from schemas.fields import FROZEN_STRICT_SHAPE, Author, Hash64, LongText, UtcTimestamp

SERIAL_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,63}$"
Serial = Annotated[str, StringConstraints(pattern=SERIAL_PATTERN)]
"""The manufacturer's serial number of a handpiece, as printed on it."""
CERTIFICATE_SERIAL_PATTERN: Final = r"^[0-9a-f]{1,40}$"
CertificateSerial = Annotated[str, StringConstraints(pattern=CERTIFICATE_SERIAL_PATTERN)]
"""An X.509 serial number in lower-case hex, without leading zeros (RFC 5280: at most
20 octets)."""
Fingerprint = Hash64
"""SHA-256 hex of a certificate's DER encoding."""


class EnrolmentMethod(StrEnum):
    CLAIM_SECRET = "claim_secret"  # noqa: S105 - the method's name, not a secret
    """The one-time secret the manufacturer issued for the device's serial."""
    FACTORY_CERTIFICATE = "factory_certificate"
    """A certificate from the factory CA, whose key the device proves it holds."""


class _Data(BaseModel):
    model_config = FROZEN_STRICT_SHAPE


class ClaimIssuedData(_Data):
    serial: Serial
    claim_digest: Hash64
    """SHA-256 hex of the claim secret; the secret itself is shown once, never kept."""
    expires_at: UtcTimestamp
    issued_by: Author


class EnrolledData(_Data):
    serial: Serial
    certificate_fingerprint: Fingerprint
    certificate_serial: CertificateSerial
    not_after: UtcTimestamp
    method: EnrolmentMethod


class CertificateIssuedData(_Data):
    certificate_fingerprint: Fingerprint
    certificate_serial: CertificateSerial
    not_after: UtcTimestamp
    replaces: Fingerprint | None
    """The certificate this one renews (``None``: the device's first)."""


class CertificateRevokedData(_Data):
    certificate_fingerprint: Fingerprint
    certificate_serial: CertificateSerial
    reason: LongText
    revoked_by: Author


class DecommissionedData(_Data):
    reason: LongText
    decommissioned_by: Author


class DeviceClaimIssued(EventEnvelope):
    type: Literal["device.claim_issued"]
    data: ClaimIssuedData


class DeviceEnrolled(EventEnvelope):
    type: Literal["device.enrolled"]
    data: EnrolledData


class DeviceCertificateIssued(EventEnvelope):
    type: Literal["device.certificate_issued"]
    data: CertificateIssuedData


class DeviceCertificateRevoked(EventEnvelope):
    type: Literal["device.certificate_revoked"]
    data: CertificateRevokedData


class DeviceDecommissioned(EventEnvelope):
    type: Literal["device.decommissioned"]
    data: DecommissionedData


IdentityEventModel = (
    DeviceClaimIssued
    | DeviceEnrolled
    | DeviceCertificateIssued
    | DeviceCertificateRevoked
    | DeviceDecommissioned
)

CLAIM_ISSUED: Final = "device.claim_issued"
ENROLLED: Final = "device.enrolled"
CERTIFICATE_ISSUED: Final = "device.certificate_issued"
CERTIFICATE_REVOKED: Final = "device.certificate_revoked"
DECOMMISSIONED: Final = "device.decommissioned"
IDENTITY_EVENT_TYPES: Final = frozenset(
    {CLAIM_ISSUED, ENROLLED, CERTIFICATE_ISSUED, CERTIFICATE_REVOKED, DECOMMISSIONED}
)
