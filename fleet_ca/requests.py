"""Certificate signing requests from devices, checked before the fleet CA signs
anything: a refusal is a value that says what is wrong, never an exception.

The fleet CA decides everything that matters in the certificate itself (subject,
lifetime, key usage, extensions); of the request it takes only the public key, and
only after the request proves it holds the private half (its signature verifies)
and names the device it is for."""

import re
from dataclasses import dataclass
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from fleet_ca.facts import common_name_of, public_key_digest
from schemas.fields import DEVICE_ID_PATTERN

MAX_REQUEST_BYTES: Final = 16 * 1024
_PEM_HEADER: Final = "-----BEGIN CERTIFICATE REQUEST-----"
_CURVES: Final = {"secp256r1": "P-256", "secp384r1": "P-384"}
_RSA_BITS: Final = range(2048, 4097)

ALLOWED_KEYS: Final = "EC P-256 or P-384, or RSA of 2048 to 4096 bits"
"""What a device's TLS key may be: what Mosquitto and the handpiece's TLS stack share
over TLS 1.2."""

DevicePublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey


@dataclass(frozen=True, slots=True)
class CheckedRequest:
    """A request the fleet CA may sign: for ``device_id``, with a key it allows."""

    device_id: str
    public_key: DevicePublicKey
    key_digest: str
    """SHA-256 hex of the request's DER SubjectPublicKeyInfo."""


@dataclass(frozen=True, slots=True)
class RequestRefusal:
    reason: str


def check_request(pem: str, device_id: str) -> CheckedRequest | RequestRefusal:
    """``pem`` as a request the fleet CA may sign for ``device_id``, or why not."""
    if re.fullmatch(DEVICE_ID_PATTERN, device_id) is None:
        # The broker takes the CN as the MQTT username, and its ACL tells devices from
        # the services' lower-case accounts by this pattern alone.
        return RequestRefusal(f"{device_id!r} does not match {DEVICE_ID_PATTERN} (DESIGN §4)")
    request = _parsed(pem)
    if isinstance(request, RequestRefusal):
        return request
    refusal = _subject_refusal(request.subject, device_id)
    if refusal is not None:
        return RequestRefusal(refusal)
    allowed = allowed_key(request.public_key())
    if isinstance(allowed, str):
        return RequestRefusal(allowed)
    return CheckedRequest(device_id, allowed, public_key_digest(request))


def _parsed(pem: str) -> x509.CertificateSigningRequest | RequestRefusal:
    """The request, once its signature is known to verify with the key it carries."""
    if len(pem.encode()) > MAX_REQUEST_BYTES:
        return RequestRefusal(f"the request is over {MAX_REQUEST_BYTES} bytes")
    if _PEM_HEADER not in pem:
        return RequestRefusal(f"not a PEM certificate signing request (no {_PEM_HEADER} line)")
    try:
        request = x509.load_pem_x509_csr(pem.encode())
    except ValueError as error:
        return RequestRefusal(f"not a PEM certificate signing request: {error}")
    try:
        request.public_key()
        signed = request.is_signature_valid
    except (ValueError, TypeError) as error:
        return RequestRefusal(f"the request's key cannot be read: {error}")
    if not signed:
        return RequestRefusal("the request's signature does not verify with the key it carries")
    return request


def _subject_refusal(subject: x509.Name, device_id: str) -> str | None:
    common_name = common_name_of(subject)
    if common_name is None:
        return "the request's subject must have exactly one CN, the device id"
    if common_name != device_id:
        return f"the request's subject CN must be the device id {device_id}, not {common_name!r}"
    others = [attribute.oid.dotted_string for attribute in subject
              if attribute.oid != NameOID.COMMON_NAME]  # fmt: skip
    if others:
        return f"the request's subject must hold only the CN (found {', '.join(others)})"
    return None


def allowed_key(key: object) -> DevicePublicKey | str:
    """``key`` when a device may hold it, else why not."""
    if isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.name not in _CURVES:
            return f"an EC key on {key.curve.name} is not allowed: use {ALLOWED_KEYS}"
        return key
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size not in _RSA_BITS:
            return f"an RSA key of {key.key_size} bits is not allowed: use {ALLOWED_KEYS}"
        return key
    return f"a {type(key).__name__.removeprefix('_')} key is not allowed: use {ALLOWED_KEYS}"
