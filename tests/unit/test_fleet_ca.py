"""The fleet CA (``fleet_ca``): requests checked before anything is signed, device
and broker certificates as the broker needs them, the CRL, factory certificates, and
the package as the one home of X.509 code."""

import ast
import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from fleet_ca import (
    CheckedRequest,
    FactoryCas,
    FleetCa,
    FleetCaError,
    RequestRefusal,
    Revocation,
    certificate_facts,
    certificate_request,
    check_factory_certificate,
    check_request,
    create_fleet_ca,
    ensure_fleet_ca,
    new_key_pem,
    public_key_of,
    revoked_serials,
    sign,
)

DEVICE = "HP-000123"
ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def _request(key: object, common_name: str = DEVICE, *extra: x509.NameAttribute[str]) -> str:
    assert isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey |
                      ed25519.Ed25519PrivateKey)  # fmt: skip
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name), *extra])
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    request = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, algorithm)
    return request.public_bytes(serialization.Encoding.PEM).decode()


def _checked(pem: str, device_id: str = DEVICE) -> CheckedRequest:
    checked = check_request(pem, device_id)
    assert isinstance(checked, CheckedRequest), checked
    return checked


def _refusal(pem: str, device_id: str = DEVICE) -> str:
    refusal = check_request(pem, device_id)
    assert isinstance(refusal, RequestRefusal), refusal
    return refusal.reason


def test_a_devices_own_request_is_accepted() -> None:
    """A P-256 request signed by its key, CN = the device id."""
    key = new_key_pem()
    checked = _checked(certificate_request(key, DEVICE))
    assert checked.device_id == DEVICE
    assert checked.public_key == public_key_of(key)


@pytest.mark.parametrize(
    ("key", "why"),
    [
        (ec.generate_private_key(ec.SECP256K1()), "secp256k1 is not allowed"),
        (rsa.generate_private_key(65537, 1024), "1024 bits is not allowed"),  # noqa: S505 - refused
        (ed25519.Ed25519PrivateKey.generate(), "Ed25519PublicKey key is not allowed"),
    ],
)
def test_keys_the_broker_and_handpiece_do_not_share_are_refused(key: object, why: str) -> None:
    """Only EC P-256/P-384 and RSA of 2048 to 4096 bits."""
    assert why in _refusal(_request(key))


def test_requests_for_another_device_or_with_more_in_the_subject_are_refused() -> None:
    """The CN must be the device id, and alone; the device id must be one (DESIGN §4)."""
    key = ec.generate_private_key(ec.SECP256R1())
    assert "CN must be the device id HP-000123, not 'HP-000124'" in _refusal(
        _request(key, "HP-000124")
    )
    organisation = x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Coreline")
    assert "only the CN" in _refusal(_request(key, DEVICE, organisation))
    assert "does not match" in _refusal(_request(key, "gateway"), "gateway")


def test_a_request_whose_signature_does_not_verify_is_refused() -> None:
    """One byte of the signature changed: refused, saying so."""
    der = x509.load_pem_x509_csr(certificate_request(new_key_pem(), DEVICE).encode()).public_bytes(
        serialization.Encoding.DER
    )
    tampered = der[:-1] + bytes([der[-1] ^ 0x01])
    pem = x509.load_der_x509_csr(tampered).public_bytes(serialization.Encoding.PEM).decode()
    assert "signature does not verify" in _refusal(pem)


def test_garbage_is_refused_as_not_a_request() -> None:
    """Not PEM, PEM of nothing, and an oversized body: refusals, never exceptions."""
    assert "no -----BEGIN CERTIFICATE REQUEST-----" in _refusal("hello")
    assert "not a PEM certificate signing request" in _refusal(
        "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"
    )
    assert "over 16384 bytes" in _refusal("x" * 20_000)


def test_device_certificates_are_short_lived_client_certificates(tmp_path: Path) -> None:
    """CN = device id, clientAuth only, not a CA, digitalSignature, a random serial,
    valid for the lifetime asked from a moment before ``now``; the facts agree."""
    ca = create_fleet_ca(tmp_path / "ca", now=NOW)
    issued = ca.issue_device(
        _checked(certificate_request(new_key_pem(), DEVICE)), lifetime=timedelta(days=90), now=NOW
    )
    certificate = x509.load_pem_x509_certificate(issued.pem)
    certificate.verify_directly_issued_by(ca.certificate)
    assert certificate.subject.rfc4514_string() == f"CN={DEVICE}"
    assert list(certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.CLIENT_AUTH
    ]
    assert not certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert certificate.extensions.get_extension_for_class(x509.KeyUsage).value.digital_signature
    assert certificate.not_valid_after_utc == NOW + timedelta(days=90)
    assert certificate.not_valid_before_utc == NOW - timedelta(minutes=5)
    facts = issued.facts
    assert facts.serial == format(certificate.serial_number, "x")
    assert facts.common_name == DEVICE
    assert certificate_facts(issued.pem) == facts
    assert facts.renew_at(2 / 3) == NOW - timedelta(minutes=5) + (
        timedelta(days=90, minutes=5) * 2 / 3
    )


def test_the_ca_keeps_its_key_private_and_never_overwrites(tmp_path: Path) -> None:
    """ca.key is mode 600; a second init is refused; a directory whose key is not the
    certificate's is refused at load."""
    create_fleet_ca(tmp_path / "ca")
    assert stat.S_IMODE(os.stat(tmp_path / "ca" / "ca.key").st_mode) == 0o600
    with pytest.raises(FleetCaError, match="exists already"):
        create_fleet_ca(tmp_path / "ca")
    assert ensure_fleet_ca(tmp_path / "ca") is False
    create_fleet_ca(tmp_path / "other")
    (tmp_path / "ca" / "ca.key").write_bytes((tmp_path / "other" / "ca.key").read_bytes())
    with pytest.raises(FleetCaError, match="is not the key of"):
        FleetCa.load(tmp_path / "ca")
    with pytest.raises(FleetCaError, match="coreline fleet-ca init"):
        FleetCa.load(tmp_path / "missing")


def test_the_broker_certificate_names_every_address(tmp_path: Path) -> None:
    """serverAuth only (it can never log in as a device), each name a subjectAltName."""
    ca = create_fleet_ca(tmp_path / "ca")
    issued = ca.issue_server(public_key_of(new_key_pem()), ["mqtt.example.com", "127.0.0.1"])
    certificate = x509.load_pem_x509_certificate(issued.pem)
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["mqtt.example.com"]
    assert [str(address) for address in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert list(certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.SERVER_AUTH
    ]


def test_the_crl_lists_what_it_is_given_signed_by_the_ca(tmp_path: Path) -> None:
    """Serials in, serials out; signed by the CA, valid for what was asked."""
    ca = create_fleet_ca(tmp_path / "ca")
    crl_pem = ca.revocation_list(
        [Revocation("1f", NOW), Revocation("abc", NOW)], valid_for=timedelta(days=30), now=NOW
    )
    assert revoked_serials(crl_pem) == {"1f", "abc"}
    crl = x509.load_pem_x509_crl(crl_pem)
    assert crl.is_signature_valid(ca.certificate.public_key())  # type: ignore[arg-type]
    assert crl.next_update_utc == NOW + timedelta(days=30)


def test_a_factory_certificate_proves_the_device_with_its_keys_signature(tmp_path: Path) -> None:
    """Issued by a factory CA for the device, its key's signature over the message:
    accepted; another message, another device or another CA: refused, saying which."""
    factory = create_fleet_ca(tmp_path / "factory")
    stranger = create_fleet_ca(tmp_path / "stranger")
    cas = FactoryCas.load(tmp_path / "factory" / "ca.crt")
    key = new_key_pem()
    pem = factory.issue_device(
        _checked(certificate_request(key, DEVICE)), lifetime=timedelta(days=3650)
    ).pem.decode()
    signature = sign(key, b"enrol me")

    accepted = check_factory_certificate(cas, pem, signature, b"enrol me", DEVICE, "SN-1")
    assert not isinstance(accepted, RequestRefusal)
    refusals = {
        "signature": check_factory_certificate(cas, pem, signature, b"other", DEVICE, "SN-1"),
        "device": check_factory_certificate(cas, pem, signature, b"enrol me", "HP-000999", "SN-1"),
        "ca": check_factory_certificate(
            cas,
            stranger.issue_device(
                _checked(certificate_request(key, DEVICE)), lifetime=timedelta(days=1)
            ).pem.decode(),
            signature, b"enrol me", DEVICE, "SN-1",
        ),
    }  # fmt: skip
    reasons = {name: getattr(refusal, "reason", "") for name, refusal in refusals.items()}
    assert "does not verify" in reasons["signature"]
    assert "not HP-000999's" in reasons["device"]
    assert "not issued by a factory CA" in reasons["ca"]


def test_only_the_fleet_ca_package_imports_x509() -> None:
    """``cryptography.x509`` is the fleet CA's alone among the product's packages."""
    importers = set()
    for top in ("schemas", "seal_keys", "fleet_ca", "transport", "edge_agent", "simulation",
                "gateway", "services"):  # fmt: skip
        for path in (ROOT / top).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                names = (
                    [alias.name for alias in node.names]
                    if isinstance(node, ast.Import)
                    else [f"{node.module}.{alias.name}" for alias in node.names]
                    if isinstance(node, ast.ImportFrom) and node.module
                    else []
                )
                if any(name.startswith("cryptography.x509") for name in names):
                    importers.add(top)
    assert importers == {"fleet_ca"}
