"""Device identity for life on the platform's side (docs/device-identity.md): claims
and enrolment, certificate renewal, seal key rotation, revocation with the CRL the
broker reads, and decommissioning.  Every change is an event in the device's registry
stream; the fleet CA (``fleet_ca``) signs, and logs what it signed."""

from services.api.identity.enrolment import (
    ClaimSecret,
    EnrolmentRequest,
    Issued,
    claim_digest,
    enrol,
    issue_claim,
)
from services.api.identity.lifecycle import (
    DeviceProof,
    decommission,
    refuse_if_decommissioned,
    renew_certificate,
    revoke_certificate,
    rotate_seal_key,
)
from services.api.identity.records import load_identity
from services.api.identity.revocation_list import PublishedCrl, publish_crl
from services.api.identity.settings import IdentityConfig, IdentitySettings, identity_config

__all__ = [
    "ClaimSecret",
    "DeviceProof",
    "EnrolmentRequest",
    "IdentityConfig",
    "IdentitySettings",
    "Issued",
    "PublishedCrl",
    "claim_digest",
    "decommission",
    "enrol",
    "identity_config",
    "issue_claim",
    "load_identity",
    "publish_crl",
    "refuse_if_decommissioned",
    "renew_certificate",
    "revoke_certificate",
    "rotate_seal_key",
]
