"""What the platform records of a certificate: its fingerprint (SHA-256 of its DER),
its serial in hex, its subject's common name and its validity."""

import hashlib
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from fleet_ca.errors import FleetCaError


@dataclass(frozen=True, slots=True)
class CertificateFacts:
    fingerprint: str
    """SHA-256 hex of the DER encoding: the name every event gives the certificate."""
    serial: str
    """The serial number in lower-case hex, as the CRL lists it."""
    common_name: str | None
    not_before: datetime
    not_after: datetime
    public_key_digest: str
    """SHA-256 hex of the DER SubjectPublicKeyInfo: the key the certificate binds."""

    def renew_at(self, fraction: float) -> datetime:
        """The moment ``fraction`` of the lifetime has passed (renew at 2/3: 0.667)."""
        return self.not_before + (self.not_after - self.not_before) * fraction


def fingerprint_of(certificate: x509.Certificate) -> str:
    return hashlib.sha256(certificate.public_bytes(serialization.Encoding.DER)).hexdigest()


def serial_text(serial: int) -> str:
    return format(serial, "x")


def common_name_of(name: x509.Name) -> str | None:
    """The one CN of ``name`` (``None`` when there is none, or several)."""
    found = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(found) != 1:
        return None
    value = found[0].value
    return value if isinstance(value, str) else value.decode(errors="replace")


def public_key_digest(key: x509.Certificate | x509.CertificateSigningRequest) -> str:
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()


def facts_of(certificate: x509.Certificate) -> CertificateFacts:
    return CertificateFacts(
        fingerprint=fingerprint_of(certificate),
        serial=serial_text(certificate.serial_number),
        common_name=common_name_of(certificate.subject),
        not_before=certificate.not_valid_before_utc,
        not_after=certificate.not_valid_after_utc,
        public_key_digest=public_key_digest(certificate),
    )


def load_certificates(pem: bytes) -> list[x509.Certificate]:
    """Every certificate of a PEM bundle, in order; ``FleetCaError`` when there is none."""
    try:
        found = x509.load_pem_x509_certificates(pem)
    except ValueError as error:
        raise FleetCaError(f"not PEM certificates: {error}") from None
    return found


def certificate_facts(pem: bytes) -> CertificateFacts:
    """The facts of the first certificate of a PEM file (a device's own comes first)."""
    return facts_of(load_certificates(pem)[0])
