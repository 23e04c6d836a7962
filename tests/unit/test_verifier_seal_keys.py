"""The verifier refuses seals under keys outside Ed25519's prime-order group, as the
platform does (DESIGN §4.1, §11): its own decision on 32 raw bytes is the platform's
(libsodium's ``crypto_core_ed25519_is_valid_point``) over RFC 8032's keys, every
small-order point and its non-canonical forms, mixed-order keys, generated keys and
random bytes; and a bundle whose registry holds the identity point as a key, with
seals anyone can make under it, fails naming the key, where OpenSSL alone would take
them."""

import json
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from coreline_verify import CheckFailed, key_id_of, seal_message, verify_file
from coreline_verify.cli import main
from coreline_verify.ed25519_points import point_defect, usable_point
from coreline_verify.seals import DeviceKeys, SealError, signature_verifies
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from nacl.bindings import crypto_core_ed25519_add, crypto_scalarmult_ed25519_base_noclamp

from seal_keys import usable
from services.evidence import StreamSeal
from tests.support.evidence_log import (
    BundleSource,
    b64url,
    chain,
    key_registered,
    sealed_vector,
    vector_events,
    vector_seals,
)

_P = 2**255 - 19
_L = 2**252 + 27742317777372353535851937790883648493
DEVICE = "HP-000014"

RFC8032_PUBLIC_KEYS = [
    "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
    "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
    "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
    "278117fc144c72340f67d0f2316e8386ceffbf2b2428c9c51fef7c597f1d426e",
    "ec172b93ad5e563bf4932c70e1245034c35467ef2efd4d64ebf819683467e2bf",
]
"""RFC 8032 §7.1, tests 1, 2, 3, 1024 and SHA(abc)."""

IDENTITY = bytes([1]) + bytes(31)
ORDER_8 = bytes.fromhex("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05")
"""A point of order 8: its multiples are the eight points of small order."""


def _small_order_points() -> list[bytes]:
    points = [IDENTITY]
    for _ in range(7):
        points.append(crypto_core_ed25519_add(points[-1], ORDER_8))
    return points


SMALL_ORDER = _small_order_points()


def _with_sign_bit(raw: bytes) -> bytes:
    return raw[:31] + bytes([raw[31] | 0x80])


def _non_canonical_forms() -> list[bytes]:
    """Each small-order point with the sign bit flipped, and every y ≥ p (y = p + k,
    the only ones that fit in 255 bits: k < 19) with either sign bit."""
    forms = [raw[:31] + bytes([raw[31] ^ 0x80]) for raw in SMALL_ORDER]
    for k in range(19):
        raw = (_P + k).to_bytes(32, "little")
        forms += [raw, _with_sign_bit(raw)]
    return forms


def _public_raw(private: Ed25519PrivateKey) -> bytes:
    return private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def _generated_keys(count: int) -> list[bytes]:
    return [_public_raw(Ed25519PrivateKey.generate()) for _ in range(count)]


def _mixed_order_keys() -> list[bytes]:
    """Generated keys plus each small-order point but the identity: on the curve,
    canonical, not of small order, and outside the prime-order group."""
    return [
        crypto_core_ed25519_add(key, torsion)
        for key in _generated_keys(4)
        for torsion in SMALL_ORDER[1:]
    ]


def _random_bytes(count: int) -> list[bytes]:
    draw = random.Random(20261130)  # seeded: the same inputs on every run
    return [draw.randbytes(32) for _ in range(count)]


def _agrees(keys: list[bytes]) -> None:
    for raw in keys:
        assert usable_point(raw) == usable(raw), raw.hex()
        assert (point_defect(raw) is None) == usable(raw), raw.hex()


def test_rfc_8032_keys_are_usable_as_the_platform_says() -> None:
    """RFC 8032's public keys are points of the group, for both deciders."""
    keys = [bytes.fromhex(key) for key in RFC8032_PUBLIC_KEYS]
    _agrees(keys)
    assert all(usable_point(raw) for raw in keys)


def test_every_small_order_point_is_refused_as_the_platform_refuses_it() -> None:
    """The eight points of small order, the identity first, are refused as such."""
    assert len(set(SMALL_ORDER)) == 8
    assert {IDENTITY, bytes(32), bytes.fromhex("ec" + "ff" * 30 + "7f")} < set(SMALL_ORDER)
    _agrees(SMALL_ORDER)
    assert not any(usable_point(raw) for raw in SMALL_ORDER)
    assert all(point_defect(raw) == "small order" for raw in SMALL_ORDER)


def test_non_canonical_encodings_are_refused_as_the_platform_refuses_them() -> None:
    """y ≥ p, and x = 0 with the sign bit set, are refused as not canonical."""
    forms = _non_canonical_forms()
    _agrees(forms)
    assert not any(usable_point(raw) for raw in forms)
    assert point_defect((_P + 3).to_bytes(32, "little")) == "not canonical (y ≥ p)"
    assert point_defect(_with_sign_bit(IDENTITY)) == "not canonical (x = 0 with the sign bit set)"


def test_mixed_order_keys_are_refused_as_the_platform_refuses_them() -> None:
    """A key plus a point of small order is on the curve but outside the group."""
    keys = _mixed_order_keys()
    _agrees(keys)
    assert not any(usable_point(raw) for raw in keys)
    assert all(point_defect(raw) == "mixed order" for raw in keys)


def test_generated_keys_are_usable_as_the_platform_says() -> None:
    """Every public half of a private key is usable."""
    keys = _generated_keys(100)
    _agrees(keys)
    assert all(usable_point(raw) for raw in keys)


def test_random_bytes_are_decided_as_the_platform_decides() -> None:
    """Random 32 bytes: about half are off the curve, nearly all the rest of mixed
    order; the decision matches the platform's on each, with both outcomes met."""
    keys = _random_bytes(400)
    _agrees(keys)
    defects = {point_defect(raw) for raw in keys}
    assert {"off the curve", "mixed order"} <= defects


def test_other_lengths_are_never_usable() -> None:
    """Anything but 32 bytes is no key."""
    for raw in (b"", bytes(31), RFC8032_PUBLIC_KEYS[0].encode()):
        assert not usable_point(raw)
        assert point_defect(raw) == "not 32 bytes"


def _forged_signature(scalar: int) -> bytes:
    """``R`` = [S]B ‖ S: under a small-order key (the identity point above all)
    [S]B = R + [k]A holds whatever the message, so no private key is needed."""
    s = (scalar % _L).to_bytes(32, "little")
    return crypto_scalarmult_ed25519_base_noclamp(s) + s


def _forged_seal(seq: int, event_hash: str, scalar: int) -> dict[str, Any]:
    message = seal_message(DEVICE, seq, event_hash)
    signature = _forged_signature(scalar)
    # The gap this closes: OpenSSL takes the forged signature under the identity key.
    Ed25519PublicKey.from_public_bytes(IDENTITY).verify(signature, message)
    return {"seq": seq, "key_id": _identity_key_id(), "sig": b64url(signature)}


def _identity_key_id() -> str:
    return key_id_of(IDENTITY)


def test_openssl_takes_a_forged_signature_under_the_identity_key() -> None:
    """The gap: any message, a signature nobody's private key made, and OpenSSL
    verifies it; under a real key it does not."""
    signature = _forged_signature(123456789)
    for message in (b"", b"any message", seal_message(DEVICE, 10, "ab" * 32)):
        Ed25519PublicKey.from_public_bytes(IDENTITY).verify(signature, message)
    with pytest.raises(InvalidSignature):
        Ed25519PrivateKey.generate().public_key().verify(signature, b"any message")


def test_a_seal_under_an_unusable_key_fails_naming_the_key_and_why() -> None:
    """Registering the identity point is taken; a seal by it fails, on both roads."""
    keys = DeviceKeys()
    key_id = _identity_key_id()
    keys.register({"key_id": key_id, "public_key": b64url(IDENTITY), "algorithm": "ed25519"})
    seal = _forged_seal(10, "ab" * 32, 42)
    assert not signature_verifies(IDENTITY, seal, DEVICE, "ab" * 32)
    with pytest.raises(SealError) as failure:
        keys.check(seal, DEVICE, "ab" * 32, log_index=5)
    assert str(failure.value) == (
        f"seal by key {key_id}: its public key is not a point of the prime-order group "
        "(small order)"
    )


def _identity_sealed_source(*, real_key_too: bool = False) -> BundleSource:
    """HP-000014's events after a registry that registers the identity point (as the
    platform stored keys before it refused such ones), every seal forged under it;
    with ``real_key_too`` the device's own key is registered as well and its seals
    kept instead."""
    vector = sealed_vector()
    events = vector_events(vector)
    registry = [
        ("device.registered", {"model": "CL-2", "registered_by": "user:qa"}),
        key_registered(_identity_key_id(), b64url(IDENTITY)),
    ]
    if real_key_too:
        registry.append(key_registered(vector["key_id"], vector["public_key"]))
        seals = vector_seals(vector)
    else:
        hashes = {event["seq"]: event["hash"] for event in events}
        seals = []
        for n, seal in enumerate(vector_seals(vector), 1):
            forged = _forged_seal(seal.seq, hashes[seal.seq], 1000 + n)
            seals.append(StreamSeal(seq=seal.seq, key_id=forged["key_id"], sig=forged["sig"]))
    return BundleSource(
        streams=[(f"registry:{DEVICE}", chain(DEVICE, registry), []), (DEVICE, events, seals)]
    )


@pytest.mark.parametrize("jobs", [1, 2], ids=["in-process", "workers"])
def test_a_bundle_sealed_under_the_identity_key_is_refused_naming_the_key(
    tmp_path: Path, jobs: int
) -> None:
    """Forged seals under the identity key (each one verifying under OpenSSL) fail at
    the first, naming the key, whether signatures are checked here or in workers."""
    source = _identity_sealed_source()
    path = tmp_path / "bundle.jsonl"
    path.write_bytes(source.bundle_bytes())
    first_sealed = vector_seals(sealed_vector())[0].seq
    with pytest.raises(CheckFailed) as failure:
        verify_file(path, jobs=jobs)
    assert str(failure.value) == (
        f"{DEVICE} seq {first_sealed}: seal by key {_identity_key_id()}: its public key is "
        "not a point of the prime-order group (small order)"
    )


def test_the_command_line_refuses_the_identity_sealed_bundle(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``coreline-verify`` exits 1 and names the key and why."""
    path = tmp_path / "bundle.jsonl"
    path.write_bytes(_identity_sealed_source().bundle_bytes())
    assert main([str(path)]) == 1
    err = capsys.readouterr().err
    assert f"seal by key {_identity_key_id()}: its public key is not a point" in err


def test_a_stored_unusable_registration_with_nothing_sealed_under_it_still_verifies(
    tmp_path: Path,
) -> None:
    """A registry may hold a key the platform stored before it refused such keys:
    the bundle verifies when the device's seals are all by its usable key."""
    path = tmp_path / "bundle.jsonl"
    path.write_bytes(_identity_sealed_source(real_key_too=True).bundle_bytes())
    printed: list[str] = []
    verify_file(path, emit=printed.append)
    vector = sealed_vector()
    assert any(f"sealed through seq 37 by {vector['key_id']}" in line for line in printed)
    lines = path.read_bytes().split(b"\n")
    registered = [json.loads(line) for line in lines if b"device.key_registered" in line]
    assert len(registered) == 2


def test_the_verifier_decides_keys_without_the_platform_or_libsodium() -> None:
    """The decision is the verifier's own: importing it and deciding a key loads
    neither the platform's packages nor PyNaCl."""
    code = (
        "import sys\n"
        "from coreline_verify.ed25519_points import usable_point\n"
        "from coreline_verify import verify_file\n"
        f"assert not usable_point({IDENTITY!r})\n"
        "loaded = {name.split('.')[0] for name in sys.modules}\n"
        "print(sorted(loaded & {'nacl', 'seal_keys', 'schemas', 'services', 'gateway'}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
