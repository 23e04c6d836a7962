"""A device's identity after enrolment, through the real API over a real store:
renewal and seal key rotation signed by the device's own seal key, revocation that
rewrites the CRL, and decommissioning that revokes everything and bars the device
from any new owner (docs/device-identity.md)."""

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from fleet_ca import revoked_serials
from seal_keys import SealKey
from services.api import commands
from tests.support.identity import Handpiece, Platform, running_platform

DEVICE = "HP-000601"
SERIAL = "SN-2026-000601"


@pytest.fixture(params=["sqlite", "postgres"])
def platform(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Platform]:
    url: str = request.getfixturevalue(f"{request.param}_url")
    with running_platform(url, tmp_path) as running:
        yield running


@pytest.fixture
def handpiece(platform: Platform) -> Handpiece:
    enrolled = Handpiece(DEVICE, SERIAL)
    platform.enrolled(enrolled)
    return enrolled


def _types(platform: Platform) -> list[str]:
    return [event.type for event in platform.registry(DEVICE)]


def test_a_device_renews_its_certificate_with_its_seal_key(
    platform: Platform, handpiece: Handpiece
) -> None:
    """A new key's request signed by the seal key gets a certificate that names the one
    it replaces; the old one stays valid (not revoked) until it expires."""
    first = orjson.loads(platform.registry(DEVICE)[-1].body)["data"]
    renewed = Handpiece(DEVICE, SERIAL, seal=handpiece.seal)
    answer = platform.client.post(
        f"/api/v1/devices/{DEVICE}/certificate", json=handpiece.renewal(renewed.csr())
    )
    assert answer.status_code == 201, answer.text
    issued = orjson.loads(platform.registry(DEVICE)[-1].body)
    assert issued["type"] == "device.certificate_issued"
    assert issued["data"]["replaces"] == first["certificate_fingerprint"]
    assert issued["data"]["certificate_fingerprint"] == answer.json()["fingerprint"]
    identity = platform.client.get(
        f"/api/v1/devices/{DEVICE}/identity", headers=platform.manufacturer
    ).json()
    assert identity["certificate"]["fingerprint"] == answer.json()["fingerprint"]
    assert [item["status"] for item in identity["certificates"]] == ["valid", "valid"]


@pytest.mark.parametrize(
    ("tamper", "why"),
    [
        ("signature", "does not verify"),
        ("stale", "more than 0:05:00 from the platform's clock"),
        ("key", "not an unrevoked seal key"),
    ],
)
def test_a_renewal_without_the_seal_keys_proof_is_refused(
    platform: Platform, handpiece: Handpiece, tamper: str, why: str
) -> None:
    """A forged signature, one from an hour ago, or one by a key the device does not
    hold: 401 naming which, and nothing recorded."""
    before = _types(platform)
    csr = Handpiece(DEVICE, SERIAL).csr()
    body = handpiece.renewal(csr)
    if tamper == "signature":
        body = handpiece.renewal(Handpiece(DEVICE, SERIAL).csr()) | {"csr": csr}
    elif tamper == "stale":
        body = handpiece.renewal(csr, signed_at=datetime.now(UTC) - timedelta(hours=1))
    else:
        body = Handpiece(DEVICE, SERIAL).renewal(csr)
    answer = platform.client.post(f"/api/v1/devices/{DEVICE}/certificate", json=body)
    assert answer.status_code == 401
    assert why in answer.json()["detail"]
    assert _types(platform) == before


def test_a_seal_key_rotation_registers_the_new_key_and_revokes_the_old(
    platform: Platform, handpiece: Handpiece
) -> None:
    """Signed by both keys: the new key registered and the old revoked in one append,
    the old one's seals so far kept valid (``sealed_through``); then the old key can
    no longer sign anything, the new one can."""
    new = SealKey.generate()
    answer = platform.client.post(
        f"/api/v1/devices/{DEVICE}/seal-key", json=handpiece.rotation(new)
    )
    assert answer.status_code == 201, answer.text
    registered, revoked = (orjson.loads(event.body) for event in platform.registry(DEVICE)[-2:])
    assert registered["type"] == "device.key_registered"
    assert registered["data"]["key_id"] == new.key_id
    assert revoked["type"] == "device.key_revoked"
    assert revoked["data"]["key_id"] == handpiece.seal.key_id
    assert revoked["data"]["sealed_through"] == 0
    assert registered["occurred_at"] == revoked["occurred_at"]

    stale = platform.client.post(
        f"/api/v1/devices/{DEVICE}/certificate", json=handpiece.renewal(handpiece.csr())
    )
    assert stale.status_code == 401
    rotated = Handpiece(DEVICE, SERIAL, seal=new)
    fresh = platform.client.post(
        f"/api/v1/devices/{DEVICE}/certificate", json=rotated.renewal(rotated.csr())
    )
    assert fresh.status_code == 201


def test_revocation_writes_the_crl(platform: Platform, handpiece: Handpiece) -> None:
    """The revoked certificate's serial is in the CRL at once; revoking it again is a
    409, an unknown fingerprint a 404, a clinic's token a 403."""
    del handpiece
    identity = platform.client.get(
        f"/api/v1/devices/{DEVICE}/identity", headers=platform.manufacturer
    ).json()
    certificate = identity["certificate"]
    path = f"/api/v1/devices/{DEVICE}/certificates/{certificate['fingerprint']}"
    assert (
        platform.client.delete(path, params={"reason": "x"}, headers=platform.clinic).status_code
        == 403
    )
    answer = platform.client.delete(path, params={"reason": "lost"}, headers=platform.manufacturer)
    assert answer.status_code == 202, answer.text
    assert answer.json()["crl_published"] is True
    assert revoked_serials(platform.config.crl_path.read_bytes()) == {certificate["serial"]}
    served = platform.client.get("/api/v1/fleet-ca/crl")
    assert served.content == platform.config.crl_path.read_bytes()
    again = platform.client.delete(path, params={"reason": "lost"}, headers=platform.manufacturer)
    assert again.status_code == 409
    unknown = platform.client.delete(
        f"/api/v1/devices/{DEVICE}/certificates/{'0' * 64}", params={"reason": "x"},
        headers=platform.manufacturer,
    )  # fmt: skip
    assert unknown.status_code == 404
    after = platform.client.get(
        f"/api/v1/devices/{DEVICE}/identity", headers=platform.manufacturer
    ).json()
    assert after["certificates"][0]["status"] == "revoked"
    assert after["certificate"] is None


def test_a_decommissioned_device_is_nobodys_to_inherit(
    platform: Platform, handpiece: Handpiece
) -> None:
    """Decommissioning revokes its certificates (in the CRL) in the same append; then no
    clinic can be given it, no claim issued for it, no enrolment or renewal accepted."""
    answer = platform.client.post(
        f"/api/v1/devices/{DEVICE}/decommission", json={"reason": "end of life"},
        headers=platform.manufacturer,
    )  # fmt: skip
    assert answer.status_code == 202, answer.text
    assert answer.json()["revoked"] == 1
    assert _types(platform)[-2:] == ["device.decommissioned", "device.certificate_revoked"]
    assert len(revoked_serials(platform.config.crl_path.read_bytes())) == 1

    assign = platform.client.put(
        f"/api/v1/devices/{DEVICE}/clinic", json={"clinic_id": "clinic-alpha"},
        headers=platform.manufacturer,
    )  # fmt: skip
    assert assign.status_code == 409
    assert "decommissioned" in assign.json()["detail"]
    claim = platform.client.post(
        f"/api/v1/devices/{DEVICE}/claims", json={"serial": SERIAL}, headers=platform.manufacturer
    )
    assert claim.status_code == 409
    renewal = platform.client.post(
        f"/api/v1/devices/{DEVICE}/certificate", json=handpiece.renewal(handpiece.csr())
    )
    assert renewal.status_code == 409
    again = platform.client.post(
        f"/api/v1/devices/{DEVICE}/decommission", json={"reason": "twice"},
        headers=platform.manufacturer,
    )  # fmt: skip
    assert again.status_code == 409
    # Taking it back from a clinic is still allowed: that only ends a custody.
    commands.assign_device(platform.store, DEVICE, None, "fleet-ops")
