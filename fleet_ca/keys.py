"""The device's side: its TLS key and the request it sends, and the proof that it
holds a factory certificate's key.  Keys are EC P-256, what the fleet CA's own key is
and every TLS stack on the way accepts."""

from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.x509.oid import NameOID

from fleet_ca.authority import private_pem, write_private
from fleet_ca.errors import FleetCaError
from fleet_ca.requests import DevicePublicKey

SigningKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey


def new_key_pem() -> bytes:
    """A new EC P-256 private key (PEM, PKCS #8)."""
    return private_pem(ec.generate_private_key(ec.SECP256R1()))


def write_new_key(path: Path) -> bytes:
    """A new key written to ``path`` (mode 0600, replaced whole); its PEM."""
    pem = new_key_pem()
    write_private(path, pem)
    return pem


def load_key(pem: bytes) -> SigningKey:
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as error:
        raise FleetCaError(f"not a PEM private key: {error}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey |
                      ed25519.Ed25519PrivateKey):  # fmt: skip
        raise FleetCaError(f"a {type(key).__name__} key cannot sign here")
    return key


def public_key_of(pem: bytes) -> DevicePublicKey:
    key = load_key(pem)
    if isinstance(key, ed25519.Ed25519PrivateKey):
        raise FleetCaError("a TLS key must be EC or RSA")
    return key.public_key()


def certificate_request(key_pem: bytes, device_id: str) -> str:
    """The PEM request for a client certificate of ``device_id`` (its CN), signed by
    the key it carries."""
    key = load_key(key_pem)
    if isinstance(key, ed25519.Ed25519PrivateKey):
        raise FleetCaError("a TLS key must be EC or RSA")
    request = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, device_id)]))
        .sign(key, hashes.SHA256())
    )
    return request.public_bytes(serialization.Encoding.PEM).decode()


def request_digest(pem: str) -> str:
    """SHA-256 hex of the request's DER: what a signature over a request names, so
    the same request in another PEM wrapping is the same request."""
    try:
        request = x509.load_pem_x509_csr(pem.encode())
    except ValueError as error:
        raise FleetCaError(f"not a PEM certificate signing request: {error}") from None
    digest = hashes.Hash(hashes.SHA256())
    digest.update(request.public_bytes(serialization.Encoding.DER))
    return digest.finalize().hex()


def sign(key_pem: bytes, message: bytes) -> bytes:
    """``message`` signed by the key: ECDSA or RSA PKCS #1 v1.5 with SHA-256, or
    Ed25519, as the key is."""
    key = load_key(key_pem)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(message, ec.ECDSA(hashes.SHA256()))
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(message, padding.PKCS1v15(), hashes.SHA256())
    return key.sign(message)
