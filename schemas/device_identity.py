"""A device's identity as its registry stream says: folded, pure, from the events of
``schemas.identity_events`` (and ``device.registered``).  What the API checks every
enrolment, renewal and revocation against, and what the gateway asks of a device
before it stores its events (is it decommissioned?)."""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import Any, Final

from schemas.identity_events import (
    CERTIFICATE_ISSUED,
    CERTIFICATE_REVOKED,
    CLAIM_ISSUED,
    DECOMMISSIONED,
    ENROLLED,
    EnrolmentMethod,
)

REGISTERED: Final = "device.registered"


class ClaimState(StrEnum):
    NONE = "none"
    OPEN = "open"
    EXPIRED = "expired"
    USED = "used"


@dataclass(frozen=True, slots=True)
class IssuedClaim:
    serial: str
    digest: str
    expires_at: datetime
    issued_at: datetime
    issued_by: str


@dataclass(frozen=True, slots=True)
class DeviceCertificate:
    fingerprint: str
    serial: str
    not_after: datetime
    issued_at: datetime
    replaces: str | None
    revoked_at: datetime | None = None
    revocation_reason: str | None = None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    def valid_at(self, now: datetime) -> bool:
        return not self.revoked and now < self.not_after


@dataclass(frozen=True, slots=True)
class Decommissioning:
    at: datetime
    reason: str
    by: str


@dataclass(frozen=True, slots=True)
class DeviceIdentity:
    """Everything the registry stream says of who the device is, as of ``through_seq``."""

    device_id: str
    registered: bool = False
    claim: IssuedClaim | None = None
    """The newest claim issued (a new one replaces one that was lost)."""
    serial: str | None = None
    """The serial it enrolled with."""
    enrolled_at: datetime | None = None
    method: EnrolmentMethod | None = None
    certificates: tuple[DeviceCertificate, ...] = ()
    """In the order they were issued."""
    decommissioned: Decommissioning | None = None
    through_seq: int = 0

    @property
    def enrolled(self) -> bool:
        return self.enrolled_at is not None

    @property
    def current_certificate(self) -> DeviceCertificate | None:
        """The newest certificate not revoked (it may have expired)."""
        for certificate in reversed(self.certificates):
            if not certificate.revoked:
                return certificate
        return None

    def certificate(self, fingerprint: str) -> DeviceCertificate | None:
        for certificate in self.certificates:
            if certificate.fingerprint == fingerprint:
                return certificate
        return None

    def claim_state(self, now: datetime) -> ClaimState:
        if self.claim is None:
            return ClaimState.NONE
        if self.enrolled:
            return ClaimState.USED
        if now >= self.claim.expires_at:
            return ClaimState.EXPIRED
        return ClaimState.OPEN

    def unrevoked(self) -> list[DeviceCertificate]:
        return [certificate for certificate in self.certificates if not certificate.revoked]


@dataclass(frozen=True, slots=True)
class RegistryFact:
    """One registry event as the fold needs it."""

    seq: int
    type: str
    occurred_at: datetime
    data: Mapping[str, Any]


def fold_identity(device_id: str, facts: Iterable[RegistryFact]) -> DeviceIdentity:
    """The identity after ``facts``, the registry stream's events in seq order (other
    registry events are passed over, but counted in ``through_seq``)."""
    identity = DeviceIdentity(device_id)
    for fact in facts:
        identity = _apply(replace(identity, through_seq=fact.seq), fact)
    return identity


def _apply(identity: DeviceIdentity, fact: RegistryFact) -> DeviceIdentity:
    data = fact.data
    if fact.type == REGISTERED:
        return replace(identity, registered=True)
    if fact.type == CLAIM_ISSUED:
        claim = IssuedClaim(
            str(data["serial"]), str(data["claim_digest"]),
            _moment(data["expires_at"]), fact.occurred_at, str(data["issued_by"]),
        )  # fmt: skip
        return replace(identity, claim=claim)
    if fact.type == ENROLLED:
        return replace(
            identity,
            serial=str(data["serial"]),
            enrolled_at=fact.occurred_at,
            method=EnrolmentMethod(data["method"]),
        )
    if fact.type == CERTIFICATE_ISSUED:
        replaces = data.get("replaces")
        issued = DeviceCertificate(
            str(data["certificate_fingerprint"]), str(data["certificate_serial"]),
            _moment(data["not_after"]), fact.occurred_at,
            replaces if isinstance(replaces, str) else None,
        )  # fmt: skip
        return replace(identity, certificates=(*identity.certificates, issued))
    if fact.type == CERTIFICATE_REVOKED:
        fingerprint = data["certificate_fingerprint"]
        certificates = tuple(
            replace(certificate, revoked_at=fact.occurred_at, revocation_reason=data["reason"])
            if certificate.fingerprint == fingerprint and not certificate.revoked
            else certificate
            for certificate in identity.certificates
        )
        return replace(identity, certificates=certificates)
    if fact.type == DECOMMISSIONED:
        decommissioning = Decommissioning(
            fact.occurred_at, str(data["reason"]), str(data["decommissioned_by"])
        )
        return replace(identity, decommissioned=decommissioning)
    return identity


def _moment(value: Any) -> datetime:
    """A stored timestamp (RFC 3339 text ending in ``Z``) as an aware datetime."""
    if isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


IDENTITY_MESSAGE_CONTEXTS: Final = (
    "coreline-enrol/v1",
    "coreline-renew/v1",
    "coreline-seal-rotate/v1",
)
"""First lines of the messages a device signs for its identity: none of them is
``coreline-seal/v1``, so no such signature can ever pass for a batch seal, nor a
seal for one of them."""


def enrolment_message(
    device_id: str, serial: str, request_digest: str, seal_public_key: str
) -> bytes:
    """What a factory certificate's key signs to enrol the device (protocol v1.2)."""
    return (
        f"coreline-enrol/v1\n{device_id}\n{serial}\n{request_digest}\n{seal_public_key}\n"
    ).encode()


def renewal_message(device_id: str, request_digest: str, signed_at: str) -> bytes:
    """What the device's seal key signs to renew its certificate."""
    return f"coreline-renew/v1\n{device_id}\n{request_digest}\n{signed_at}\n".encode()


def rotation_message(device_id: str, new_public_key: str, signed_at: str) -> bytes:
    """What the old and the new seal key both sign to rotate the device's seal key."""
    return f"coreline-seal-rotate/v1\n{device_id}\n{new_public_key}\n{signed_at}\n".encode()
