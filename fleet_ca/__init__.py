"""The fleet CA (docs/device-identity.md): the one package that handles X.509, with
the ``cryptography`` library's builders.  It keeps the CA's key in a directory of
its own, checks devices' certificate requests, issues device and broker
certificates, builds the revocation list the broker reads, and checks factory
certificates; on the device's side it makes the TLS key and the request."""

from fleet_ca.authority import (
    CA_CERT,
    CA_KEY,
    FleetCa,
    IssuedCertificate,
    Revocation,
    create_fleet_ca,
    ensure_fleet_ca,
    revoked_serials,
    write_private,
)
from fleet_ca.errors import FleetCaError
from fleet_ca.factory import FactoryCas, check_factory_certificate
from fleet_ca.facts import CertificateFacts, certificate_facts
from fleet_ca.keys import (
    certificate_request,
    load_key,
    new_key_pem,
    public_key_of,
    request_digest,
    sign,
    write_new_key,
)
from fleet_ca.requests import ALLOWED_KEYS, CheckedRequest, RequestRefusal, check_request

__all__ = [
    "ALLOWED_KEYS",
    "CA_CERT",
    "CA_KEY",
    "CertificateFacts",
    "CheckedRequest",
    "FactoryCas",
    "FleetCa",
    "FleetCaError",
    "IssuedCertificate",
    "RequestRefusal",
    "Revocation",
    "certificate_facts",
    "certificate_request",
    "check_factory_certificate",
    "check_request",
    "create_fleet_ca",
    "ensure_fleet_ca",
    "load_key",
    "new_key_pem",
    "public_key_of",
    "request_digest",
    "revoked_serials",
    "sign",
    "write_new_key",
    "write_private",
]
