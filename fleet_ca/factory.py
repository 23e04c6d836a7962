"""Enrolment by factory certificate: a certificate the factory CA put on the
handpiece at manufacture, and the device's signature, by that certificate's key,
over its enrolment request.  A refusal is a value that says why."""

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.x509.oid import NameOID

from fleet_ca.errors import FleetCaError
from fleet_ca.facts import CertificateFacts, common_name_of, facts_of, load_certificates
from fleet_ca.requests import RequestRefusal


@dataclass(frozen=True, slots=True)
class FactoryCas:
    """The factory CAs whose certificates enrol devices (``CORELINE_FACTORY_CA_FILE``)."""

    roots: tuple[x509.Certificate, ...]

    @classmethod
    def load(cls, path: Path) -> "FactoryCas":
        try:
            return cls(tuple(load_certificates(path.read_bytes())))
        except OSError as error:
            raise FleetCaError(f"factory CA file {path}: {error.strerror}") from None


def check_factory_certificate(
    cas: FactoryCas,
    pem: str,
    signature: bytes,
    message: bytes,
    device_id: str,
    serial: str,
    now: datetime | None = None,
) -> CertificateFacts | RequestRefusal:
    """The factory certificate's facts when it was issued by one of ``cas`` for
    ``device_id`` (its CN; its subject serialNumber, when it has one, ``serial``),
    is valid at ``now``, and its key made ``signature`` over ``message``."""
    try:
        certificate = x509.load_pem_x509_certificate(pem.encode())
    except ValueError as error:
        return RequestRefusal(f"the factory certificate is not a PEM certificate: {error}")
    if not any(_issued_by(certificate, root) for root in cas.roots):
        return RequestRefusal("the factory certificate was not issued by a factory CA")
    moment = now or datetime.now(UTC)
    if not certificate.not_valid_before_utc <= moment <= certificate.not_valid_after_utc:
        return RequestRefusal("the factory certificate is not valid now")
    if common_name_of(certificate.subject) != device_id:
        return RequestRefusal(f"the factory certificate is not {device_id}'s (its CN differs)")
    serials = certificate.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)
    if serials and serials[0].value != serial:
        return RequestRefusal(f"the factory certificate is for another serial than {serial}")
    if not _verifies(certificate.public_key(), signature, message):
        return RequestRefusal("the factory signature does not verify with the certificate's key")
    return facts_of(certificate)


def _issued_by(certificate: x509.Certificate, root: x509.Certificate) -> bool:
    try:
        certificate.verify_directly_issued_by(root)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _verifies(key: object, signature: bytes, message: bytes) -> bool:
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, message, ec.ECDSA(hashes.SHA256()))
        elif isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
        elif isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, message)
        else:
            return False
    except InvalidSignature:
        return False
    return True
