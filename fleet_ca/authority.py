"""The fleet CA: its key and certificate in a directory outside the database, the
device and broker certificates it issues, and the revocation list the broker reads.

Layout of the directory (``CORELINE_FLEET_CA_DIR``):

* ``ca.key``: the CA's private key (PEM, mode 0600).  Whoever holds it can mint any
  device, so it never leaves the hosts that enrol devices.
* ``ca.crt``: the CA's certificate (PEM): the broker's ``cafile`` on the device
  listener, and what every device gets with its certificate.  When the fleet CA is
  an intermediate of an offline root, this file holds the chain, the CA's own
  certificate first.

Device certificates are short-lived (90 days by default) and renewed by the device
itself; their CN is the device id, which the broker takes as the MQTT username.
"""

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from ipaddress import ip_address
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from fleet_ca.errors import FleetCaError
from fleet_ca.facts import CertificateFacts, facts_of, load_certificates
from fleet_ca.requests import CheckedRequest, DevicePublicKey

CA_KEY: Final = "ca.key"
CA_CERT: Final = "ca.crt"
CA_LIFETIME: Final = timedelta(days=3650)
SERVER_LIFETIME: Final = timedelta(days=825)
MAX_BACKDATE: Final = timedelta(minutes=5)
"""How far ``not_before`` is set back: a broker whose clock is a little behind still
accepts a certificate issued a moment ago."""


@dataclass(frozen=True, slots=True)
class IssuedCertificate:
    pem: bytes
    facts: CertificateFacts


@dataclass(frozen=True, slots=True)
class Revocation:
    """One certificate the CRL lists."""

    serial: str
    """Hex, as ``CertificateFacts.serial``."""
    revoked_at: datetime


class FleetCa:
    """A loaded fleet CA: ``FleetCa.load(directory)``, or ``create_fleet_ca``."""

    def __init__(self, key: ec.EllipticCurvePrivateKey, chain: Sequence[x509.Certificate]) -> None:
        self._key = key
        self.certificate = chain[0]
        self._chain = tuple(chain)

    @classmethod
    def load(cls, directory: Path) -> "FleetCa":
        try:
            key_pem = (directory / CA_KEY).read_bytes()
            chain = load_certificates((directory / CA_CERT).read_bytes())
        except OSError as error:
            raise FleetCaError(
                f"no fleet CA in {directory} ({error.strerror}): run `coreline fleet-ca init`"
            ) from None
        try:
            key = serialization.load_pem_private_key(key_pem, password=None)
        except (ValueError, TypeError) as error:
            raise FleetCaError(f"{directory / CA_KEY}: not a PEM private key ({error})") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise FleetCaError(f"{directory / CA_KEY}: the fleet CA's key must be an EC key")
        if key.public_key() != chain[0].public_key():
            raise FleetCaError(f"{directory / CA_KEY} is not the key of {directory / CA_CERT}")
        return cls(key, chain)

    @property
    def chain_pem(self) -> bytes:
        """The CA's certificate (and its issuers'): what a device needs to trust the
        broker and to present with its own certificate."""
        return b"".join(
            certificate.public_bytes(serialization.Encoding.PEM) for certificate in self._chain
        )

    def issue_device(
        self, request: CheckedRequest, *, lifetime: timedelta, now: datetime | None = None
    ) -> IssuedCertificate:
        """A TLS client certificate for the request's device: CN = the device id,
        extended key usage clientAuth only, valid for ``lifetime`` from ``now``."""
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, request.device_id)])
        builder = self._leaf(name, request.public_key, lifetime, now).add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
        return self._sign(builder)

    def issue_server(
        self,
        public_key: DevicePublicKey,
        names: Sequence[str],
        *,
        lifetime: timedelta = SERVER_LIFETIME,
        now: datetime | None = None,
    ) -> IssuedCertificate:
        """The broker's TLS server certificate: CN = the first name, every name a
        subjectAltName (an IP address as such), extended key usage serverAuth only,
        so it can never log in to the device listener."""
        if not names:
            raise FleetCaError("a server certificate needs at least one name")
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
        builder = (
            self._leaf(subject, public_key, lifetime, now)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectAlternativeName(_alt_names(names)), critical=False)
        )
        return self._sign(builder)

    def revocation_list(
        self,
        revoked: Iterable[Revocation],
        *,
        valid_for: timedelta,
        now: datetime | None = None,
    ) -> bytes:
        """The CRL (PEM) listing ``revoked``, valid for ``valid_for`` from ``now``.

        The broker refuses every device once the CRL it holds is past its next
        update (OpenSSL: "CRL has expired"), so it must be re-issued well before:
        ``coreline fleet-ca crl`` does, and every revocation does."""
        moment = now or datetime.now(UTC)
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.certificate.subject)
            .last_update(moment)
            .next_update(moment + valid_for)
            .add_extension(x509.CRLNumber(int(moment.timestamp() * 1000)), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()),
                critical=False,
            )
        )
        for entry in sorted(revoked, key=lambda entry: int(entry.serial, 16)):
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder()
                .serial_number(int(entry.serial, 16))
                .revocation_date(entry.revoked_at)
                .build()
            )
        crl = builder.sign(self._key, hashes.SHA256())
        return crl.public_bytes(serialization.Encoding.PEM)

    def _leaf(
        self,
        subject: x509.Name,
        public_key: DevicePublicKey,
        lifetime: timedelta,
        now: datetime | None,
    ) -> x509.CertificateBuilder:
        if lifetime <= timedelta(0):
            raise FleetCaError("a certificate's lifetime must be positive")
        moment = now or datetime.now(UTC)
        backdate = min(MAX_BACKDATE, lifetime / 10)
        not_after = min(moment + lifetime, self.certificate.not_valid_after_utc)
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.certificate.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(moment - backdate)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_DIGITAL_SIGNATURE_ONLY, critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()),
                critical=False,
            )
        )

    def _sign(self, builder: x509.CertificateBuilder) -> IssuedCertificate:
        certificate = builder.sign(self._key, hashes.SHA256())
        return IssuedCertificate(
            certificate.public_bytes(serialization.Encoding.PEM), facts_of(certificate)
        )


def create_fleet_ca(
    directory: Path, *, lifetime: timedelta = CA_LIFETIME, now: datetime | None = None
) -> FleetCa:
    """A new fleet CA in ``directory`` (EC P-256: small and fast on a handpiece's TLS
    stack).  Refuses to overwrite anything."""
    for name in (CA_KEY, CA_CERT):
        if (directory / name).exists():
            raise FleetCaError(f"{directory / name} exists already: nothing was changed")
    moment = now or datetime.now(UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Coreline"),
        x509.NameAttribute(NameOID.COMMON_NAME, "Coreline fleet CA"),
    ])  # fmt: skip
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(moment - MAX_BACKDATE)
        .not_valid_after(moment + lifetime)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_CA_KEY_USAGE, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    write_private(directory / CA_KEY, private_pem(key))
    (directory / CA_CERT).write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return FleetCa(key, [certificate])


def ensure_fleet_ca(directory: Path) -> bool:
    """Create a fleet CA in ``directory`` unless one is there; whether it was created."""
    if (directory / CA_KEY).exists() or (directory / CA_CERT).exists():
        FleetCa.load(directory)  # refuse a half or mismatched CA now, with a message
        return False
    create_fleet_ca(directory)
    return True


def private_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def write_private(path: Path, content: bytes) -> None:
    """Write a private key readable by its owner alone, replacing ``path`` whole: a
    crash leaves the old file or the new one, never half of either."""
    partial = path.with_name(path.name + ".partial")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(content)
        file.flush()
        os.fsync(file.fileno())
    partial.replace(path)


def _alt_names(names: Sequence[str]) -> list[x509.GeneralName]:
    alt_names: list[x509.GeneralName] = []
    for name in names:
        try:
            alt_names.append(x509.IPAddress(ip_address(name)))
        except ValueError:
            alt_names.append(x509.DNSName(name))
    return alt_names


_DIGITAL_SIGNATURE_ONLY: Final = x509.KeyUsage(
    digital_signature=True, content_commitment=False, key_encipherment=False,
    data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
    encipher_only=False, decipher_only=False,
)  # fmt: skip
_CA_KEY_USAGE: Final = x509.KeyUsage(
    digital_signature=False, content_commitment=False, key_encipherment=False,
    data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
    encipher_only=False, decipher_only=False,
)  # fmt: skip


def revoked_serials(crl_pem: bytes) -> set[str]:
    """The serials (hex) a CRL lists."""
    try:
        crl = x509.load_pem_x509_crl(crl_pem)
    except ValueError as error:
        raise FleetCaError(f"not a PEM CRL: {error}") from None
    return {format(entry.serial_number, "x") for entry in crl}
