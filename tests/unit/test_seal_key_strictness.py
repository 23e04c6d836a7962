"""Which Ed25519 keys and signatures a device seal may use (DESIGN §4.1): RFC 8032's
vectors verify; small-order, off-curve, non-canonical and mixed-order keys are
refused where keys are registered and verify nothing if one was stored before;
signatures whose ``S`` is not reduced, or of the wrong length, never verify."""

from datetime import UTC, datetime

import pytest

from gateway.seal_gate import Claim, DeviceKeys, judge
from schemas import RejectionReason
from schemas.seals import BatchSeal, Keyring, SealClaim, b64url, key_id_of, seal_message
from seal_keys import PublicSealKey, SealKey, SealKeyError, usable, usable_public_key, verify_claim
from services.api import commands
from services.api.identity.lifecycle import DeviceProof, rotate_seal_key
from services.api.problems import Problem
from services.eventstore import InMemoryEventStore, load_keyring

_L = 2**252 + 27742317777372353535851937790883648493
"""The order of Ed25519's prime-order group."""
_P = 2**255 - 19

# RFC 8032 §7.1, tests 1 to 3: public key, message, signature.
RFC8032 = [
    (
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        "",
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
        "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
    ),
    (
        "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        "72",
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da"
        "085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
    ),
    (
        "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
        "af82",
        "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac"
        "18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a",
    ),
]

IDENTITY = bytes([1]) + bytes(31)
"""The neutral point (order 1): under it, ``R`` = the neutral point and ``S`` = 0
satisfy the verification equation for every message."""
SMALL_ORDER = {
    "order 1": IDENTITY,
    "order 2": bytes.fromhex("ec" + "ff" * 30 + "7f"),
    "order 4": bytes(32),
    "order 8": bytes.fromhex("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"),
    "order 8, the other": bytes.fromhex(
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a"
    ),
    "order 1, y = p + 1": bytes.fromhex("ee" + "ff" * 30 + "7f"),
}
NOT_IN_THE_GROUP = {
    "off the curve (y = 2)": (2).to_bytes(32, "little"),
    "non-canonical (y = p + 3)": (_P + 3).to_bytes(32, "little"),
    "mixed order (y = 3)": (3).to_bytes(32, "little"),
}
FORGED = IDENTITY + bytes(32)
"""The signature anyone can make under a small-order key."""


@pytest.mark.parametrize(("public", "message", "signature"), RFC8032)
def test_the_rfc_8032_vectors_verify_and_any_changed_byte_does_not(
    public: str, message: str, signature: str
) -> None:
    key = PublicSealKey(bytes.fromhex(public))
    raw_message, raw_signature = bytes.fromhex(message), bytes.fromhex(signature)
    assert usable(key.raw)
    assert key.verifies(raw_message, b64url(raw_signature))
    assert not key.verifies(raw_message + b"\x00", b64url(raw_signature))
    for at in (0, 31, 32, 63):
        changed = bytearray(raw_signature)
        changed[at] ^= 0x01
        assert not key.verifies(raw_message, b64url(bytes(changed)))


@pytest.mark.parametrize("raw", SMALL_ORDER.values(), ids=SMALL_ORDER.keys())
def test_a_small_order_key_is_refused_at_registration_and_forges_nothing(raw: bytes) -> None:
    assert not usable(raw)
    with pytest.raises(SealKeyError, match="small-order"):
        usable_public_key(b64url(raw))
    key = PublicSealKey(raw)  # one stored before keys were checked: it verifies nothing
    for message in (b"", seal_message("HP-000001", 10, "ab" * 32)):
        assert not key.verifies(message, b64url(FORGED))


@pytest.mark.parametrize("raw", NOT_IN_THE_GROUP.values(), ids=NOT_IN_THE_GROUP.keys())
def test_keys_outside_the_prime_order_group_are_refused_at_registration(raw: bytes) -> None:
    assert not usable(raw)
    with pytest.raises(SealKeyError, match="not an Ed25519 public key"):
        usable_public_key(b64url(raw))
    assert not PublicSealKey(raw).verifies(b"", b64url(FORGED))


def test_generated_keys_are_usable_and_registered_as_they_are() -> None:
    for n in range(200):
        key = SealKey.derived(f"HP-{n:06d}")
        assert usable_public_key(key.public_text) == key.public_raw
        assert usable_public_key(f" {key.public_text}\n") == key.public_raw


@pytest.mark.parametrize("text", ["", "AAAA", "A" * 44, "not base64!", b64url(bytes(31))])
def test_registration_refuses_what_is_not_32_bytes_of_base64url(text: str) -> None:
    with pytest.raises(SealKeyError):
        usable_public_key(text)


def test_a_signature_whose_s_is_not_reduced_is_refused() -> None:
    """``S`` + L satisfies the same equation; accepting it would make seals malleable."""
    public, message, signature = RFC8032[0]
    raw = bytes.fromhex(signature)
    s = int.from_bytes(raw[32:], "little")
    key = PublicSealKey(bytes.fromhex(public))
    assert key.verifies(bytes.fromhex(message), b64url(raw))
    for unreduced in (s + _L, _L, 2**256 - 1):
        forged = raw[:32] + unreduced.to_bytes(32, "little")
        assert not key.verifies(bytes.fromhex(message), b64url(forged))


def test_signatures_of_the_wrong_length_or_not_base64url_are_refused() -> None:
    key = SealKey.derived("HP-000001")
    public = PublicSealKey(key.public_raw)
    message = seal_message("HP-000001", 3, "cd" * 32)
    signature = key.private.sign(message)
    assert public.verifies(message, b64url(signature))
    # Joined to the message, a short or long signature would shift the bytes checked.
    for wrong in (signature[:63], signature + b"\x00", signature[1:] + message[:1], b""):
        assert not public.verifies(message, b64url(wrong))
        assert not public.verifies(message[1:], b64url(wrong))
    assert not public.verifies(message, b64url(signature) + "=")
    assert not public.verifies(message, "not base64url!")


def test_the_api_refuses_a_small_order_key_with_a_400_and_registers_nothing() -> None:
    store = InMemoryEventStore()
    with pytest.raises(Problem) as refused:
        commands.register_key(store, "HP-000001", b64url(IDENTITY), "test")
    assert refused.value.status == 400
    assert "public key: not an Ed25519 public key" in refused.value.detail
    assert not load_keyring(store, "HP-000001").enrolled
    good = SealKey.derived("HP-000001")
    commands.register_key(store, "HP-000001", good.public_text, "test")
    assert list(load_keyring(store, "HP-000001").keys) == [good.key_id]


def test_a_rotation_to_a_small_order_key_is_a_422_before_any_proof_is_read() -> None:
    """Under OpenSSL the new key's ``FORGED`` proof verified; it never gets that far."""
    proof = DeviceProof(key_id="00" * 8, signed_at="2026-11-30T20:00:00Z", signature="")
    with pytest.raises(Problem) as refused:
        rotate_seal_key(
            InMemoryEventStore(),
            "HP-000001",
            b64url(IDENTITY),
            proof,
            b64url(FORGED),
            now=datetime(2026, 11, 30, 20, tzinfo=UTC),
        )
    assert refused.value.status == 422
    assert refused.value.detail.startswith("new_public_key: not an Ed25519 public key")


def test_the_gateway_refuses_a_forged_seal_under_a_small_order_key_stored_before() -> None:
    """A key registered before registration checked keys: its seals are refused whole
    with reason ``signature``, the gate does not fail."""
    device_id = "HP-000001"
    keys = DeviceKeys(
        Keyring().registered(IDENTITY), {key_id_of(IDENTITY): PublicSealKey(IDENTITY)}, 0.0
    )
    seal = BatchSeal(key_id=key_id_of(IDENTITY), seq=1, sig=b64url(FORGED))
    claim_seal = SealClaim(device_id, seal, "ab" * 32)
    assert not verify_claim(keys.public[seal.key_id], claim_seal)
    claim = Claim("coreline/v1/devices/HP-000001/events", b"{}", device_id, seal=claim_seal)
    verdict = judge([claim], lambda _device, _key: keys)
    assert verdict.seals == ()
    ((refused, letter),) = verdict.refused
    assert refused is claim
    assert letter.rejection.reason is RejectionReason.SIGNATURE
    assert "does not verify" in letter.rejection.detail
