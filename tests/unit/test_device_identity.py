"""A device's identity folded from its registry stream (``schemas.device_identity``),
the messages a device signs for it, and the seal gate refusing a decommissioned
device's batches whatever their seal."""

from datetime import UTC, datetime, timedelta
from typing import Any

from gateway.seal_gate import Claim, DeviceKeys, judge
from schemas import RejectionReason
from schemas.device_identity import (
    ClaimState,
    RegistryFact,
    enrolment_message,
    fold_identity,
    renewal_message,
    rotation_message,
)
from schemas.identity_events import EnrolmentMethod
from schemas.seals import SEAL_CONTEXT, Keyring

DEVICE = "HP-000123"
T0 = datetime(2026, 12, 1, tzinfo=UTC)


def _fact(seq: int, kind: str, data: dict[str, Any], minutes: int = 0) -> RegistryFact:
    return RegistryFact(seq, kind, T0 + timedelta(minutes=minutes), data)


def _issued(seq: int, fingerprint: str, replaces: str | None) -> RegistryFact:
    return _fact(seq, "device.certificate_issued", {
        "certificate_fingerprint": fingerprint, "certificate_serial": f"{seq:x}",
        "not_after": "2027-03-01T00:00:00.000Z", "replaces": replaces,
    }, minutes=seq)  # fmt: skip


LIFE = [
    _fact(1, "device.registered", {"model": "CX-2", "registered_by": "ops"}),
    _fact(
        2,
        "device.claim_issued",
        {
            "serial": "SN-1",
            "claim_digest": "0" * 64,
            "expires_at": "2026-12-31T00:00:00.000Z",
            "issued_by": "ops",
        },
    ),
    _fact(
        3,
        "device.enrolled",
        {
            "serial": "SN-1",
            "certificate_fingerprint": "a" * 64,
            "certificate_serial": "1",
            "not_after": "2027-03-01T00:00:00.000Z",
            "method": "claim_secret",
        },
        minutes=3,
    ),
    _fact(4, "device.key_registered", {"key_id": "0" * 16}),
    _issued(5, "a" * 64, None),
    _issued(6, "b" * 64, "a" * 64),
]


def test_a_life_folds_to_who_the_device_is() -> None:
    """Registered, claim used, enrolled with its serial, two certificates, the newest
    the one in use; other registry events counted but passed over."""
    identity = fold_identity(DEVICE, LIFE)
    assert identity.registered
    assert identity.serial == "SN-1"
    assert identity.method is EnrolmentMethod.CLAIM_SECRET
    assert identity.enrolled_at == T0 + timedelta(minutes=3)
    assert identity.claim_state(T0) is ClaimState.USED
    assert [item.fingerprint for item in identity.certificates] == ["a" * 64, "b" * 64]
    current = identity.current_certificate
    assert current is not None
    assert current.fingerprint == "b" * 64
    assert identity.through_seq == 6
    assert identity.decommissioned is None


def test_a_claim_is_open_until_it_expires_or_is_used() -> None:
    """Before enrolment the claim is open, then expired past its time."""
    identity = fold_identity(DEVICE, LIFE[:2])
    assert identity.claim_state(T0) is ClaimState.OPEN
    assert identity.claim_state(datetime(2026, 12, 31, tzinfo=UTC)) is ClaimState.EXPIRED
    assert fold_identity(DEVICE, []).claim_state(T0) is ClaimState.NONE


def test_revocation_and_decommissioning() -> None:
    """A revoked certificate is no longer the one in use (the previous one is); a
    decommissioning is remembered with its reason and author."""
    revoked = _fact(7, "device.certificate_revoked", {
        "certificate_fingerprint": "b" * 64, "certificate_serial": "6", "reason": "lost",
        "revoked_by": "ops",
    }, minutes=7)  # fmt: skip
    retired = _fact(
        8, "device.decommissioned", {"reason": "scrapped", "decommissioned_by": "ops"}, minutes=8
    )
    identity = fold_identity(DEVICE, [*LIFE, revoked, retired])
    certificate = identity.certificate("b" * 64)
    assert certificate is not None
    assert certificate.revoked
    assert certificate.revocation_reason == "lost"
    assert not certificate.valid_at(T0)
    current = identity.current_certificate
    assert current is not None
    assert current.fingerprint == "a" * 64
    assert identity.decommissioned is not None
    assert identity.decommissioned.reason == "scrapped"
    assert [item.fingerprint for item in identity.unrevoked()] == ["a" * 64]


def test_the_messages_a_device_signs_can_never_pass_for_a_seal() -> None:
    """Each names its purpose on its first line, none of them the seal's; each names
    the device and what is asked."""
    messages = [
        enrolment_message(DEVICE, "SN-1", "d" * 64, "k" * 43),
        renewal_message(DEVICE, "d" * 64, "2026-12-01T00:00:00.000Z"),
        rotation_message(DEVICE, "k" * 43, "2026-12-01T00:00:00.000Z"),
    ]
    firsts = {message.split(b"\n")[0].decode() for message in messages}
    assert firsts == {"coreline-enrol/v1", "coreline-renew/v1", "coreline-seal-rotate/v1"}
    assert SEAL_CONTEXT not in firsts
    assert all(DEVICE.encode() in message for message in messages)


def test_the_seal_gate_refuses_a_decommissioned_device_as_identity() -> None:
    """A decommissioned device's batch is refused whole with reason ``identity``, even
    unsealed from a device that never had a key (which would otherwise pass)."""
    claim = Claim("coreline/v1/devices/HP-000123/events", b"{}", DEVICE)
    retired = DeviceKeys(Keyring(), {}, 0.0, retired="HP-000123 was decommissioned")
    verdict = judge([claim], lambda _device, _key: retired)
    assert [letter.rejection.reason for _, letter in verdict.refused] == [RejectionReason.IDENTITY]
    assert verdict.refused[0][1].rejection.detail == "HP-000123 was decommissioned"
    admitted = judge([claim], lambda _device, _key: DeviceKeys(Keyring(), {}, 0.0))
    assert admitted.refused == ()
