"""Enrolment through the real API over a real store (docs/device-identity.md): a claim
secret shown once and kept only as its digest, one enrolment per device recorded as
three events in one append, and every refusal (wrong secret, used or expired claim,
malformed request, unregistered or decommissioned device) precise and changing
nothing."""

import hashlib
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import orjson
import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from fleet_ca import FleetCa, create_fleet_ca, new_key_pem, public_key_of, sign
from schemas.device_identity import enrolment_message
from schemas.seals import b64url
from services.api.identity.register import logged
from tests.support.identity import Handpiece, Platform, running_platform

DEVICE = "HP-000501"
SERIAL = "SN-2026-000501"


@pytest.fixture
def platform(sqlite_url: str, tmp_path: Path) -> Iterator[Platform]:
    with running_platform(sqlite_url, tmp_path) as running:
        yield running


def _heads(platform: Platform, device_id: str) -> int:
    return len(platform.registry(device_id))


def test_a_claim_is_shown_once_and_kept_only_as_its_digest(platform: Platform) -> None:
    """The manufacturer gets the secret in the answer; the registry stream holds its
    SHA-256 and the serial, never the secret itself."""
    platform.register(DEVICE)
    secret = platform.claim(DEVICE, SERIAL)

    (issued,) = [
        event for event in platform.registry(DEVICE) if event.type == "device.claim_issued"
    ]
    assert secret.encode() not in issued.body
    data = orjson.loads(issued.body)["data"]
    assert data["claim_digest"] == hashlib.sha256(secret.encode()).hexdigest()
    assert data["serial"] == SERIAL
    assert data["issued_by"].startswith("fleet-ops (manufacturer token ")


def test_only_the_manufacturer_issues_claims_and_only_for_registered_devices(
    platform: Platform,
) -> None:
    """A clinic's token is refused (403); a device nobody registered gets no claim (409)."""
    platform.register(DEVICE)
    refused = platform.client.post(
        f"/api/v1/devices/{DEVICE}/claims", json={"serial": SERIAL}, headers=platform.clinic
    )
    assert refused.status_code == 403
    unknown = platform.client.post(
        "/api/v1/devices/HP-000999/claims", json={"serial": SERIAL}, headers=platform.manufacturer
    )
    assert unknown.status_code == 409
    assert "not registered" in unknown.json()["detail"]


def test_enrolment_issues_the_certificate_and_records_three_events_at_once(
    platform: Platform,
) -> None:
    """The device's certificate names it (CN), is for TLS clients only and comes from
    the fleet CA; ``device.enrolled``, ``device.key_registered`` and
    ``device.certificate_issued`` follow the claim, one moment, fingerprints agreeing;
    the CA's log holds the certificate."""
    handpiece = Handpiece(DEVICE, SERIAL)
    answer = platform.enrolled(handpiece)

    certificate = x509.load_pem_x509_certificate(answer["certificate"].encode())
    ca = FleetCa.load(platform.config.fleet_ca_dir)
    certificate.verify_directly_issued_by(ca.certificate)
    assert certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == DEVICE
    usage = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    lifetime = certificate.not_valid_after_utc - certificate.not_valid_before_utc
    assert timedelta(days=90) <= lifetime <= timedelta(days=90, minutes=5)
    assert certificate.public_key() == public_key_of(handpiece.tls_key)
    assert answer["ca_certificates"].encode() == ca.chain_pem

    events = platform.registry(DEVICE)
    assert [event.type for event in events] == [
        "device.registered", "device.claim_issued",
        "device.enrolled", "device.key_registered", "device.certificate_issued",
    ]  # fmt: skip
    enrolled, key, issued = (orjson.loads(event.body) for event in events[2:])
    assert len({event.occurred_at for event in events[2:]}) == 1
    assert enrolled["data"]["certificate_fingerprint"] == answer["fingerprint"]
    assert enrolled["data"]["method"] == "claim_secret"
    assert issued["data"] == {
        "certificate_fingerprint": answer["fingerprint"],
        "certificate_serial": answer["serial"],
        "not_after": enrolled["data"]["not_after"],
        "replaces": None,
    }
    assert key["data"]["key_id"] == handpiece.seal.key_id
    found = logged(platform.engine, answer["fingerprint"])
    assert found is not None
    assert found.pem == answer["certificate"].encode()


def test_a_claim_is_single_use_and_a_retried_enrolment_gets_the_same_answer(
    platform: Platform,
) -> None:
    """The same request again (its answer was lost) gets the same certificate (200) and
    records nothing; the claim with another key is refused (409), recording nothing."""
    handpiece = Handpiece(DEVICE, SERIAL)
    platform.register(DEVICE)
    secret = platform.claim(DEVICE, SERIAL)
    first = platform.client.post("/api/v1/enrolment", json=handpiece.enrolment(secret))
    assert first.status_code == 201
    recorded = _heads(platform, DEVICE)

    again = platform.client.post("/api/v1/enrolment", json=handpiece.enrolment(secret))
    assert again.status_code == 200
    assert again.json()["fingerprint"] == first.json()["fingerprint"]

    usurper = Handpiece(DEVICE, SERIAL)
    refused = platform.client.post("/api/v1/enrolment", json=usurper.enrolment(secret))
    assert refused.status_code == 409
    assert "enrolled already" in refused.json()["detail"]
    assert _heads(platform, DEVICE) == recorded


def test_a_wrong_secret_is_refused_and_changes_nothing(platform: Platform) -> None:
    """401, saying the secret is not the one issued; the registry stream is as it was."""
    platform.register(DEVICE)
    platform.claim(DEVICE, SERIAL)
    before = _heads(platform, DEVICE)
    answer = platform.client.post(
        "/api/v1/enrolment", json=Handpiece(DEVICE, SERIAL).enrolment("clm_not-the-secret")
    )
    assert answer.status_code == 401
    assert "not the one issued" in answer.json()["detail"]
    wrong_serial = platform.client.post(
        "/api/v1/enrolment",
        json=Handpiece(DEVICE, "SN-OTHER").enrolment(platform.claim(DEVICE, SERIAL)),
    )
    assert wrong_serial.status_code == 401
    assert "another serial" in wrong_serial.json()["detail"]
    assert [event.type for event in platform.registry(DEVICE)][before:] == ["device.claim_issued"]


def test_an_expired_claim_is_gone(sqlite_url: str, tmp_path: Path) -> None:
    """A claim past its expiry gets 410 saying when it expired; nothing is recorded."""
    with running_platform(sqlite_url, tmp_path, claim_lifetime=timedelta(seconds=1)) as platform:
        platform.register(DEVICE)
        answer = platform.client.post(
            f"/api/v1/devices/{DEVICE}/claims", json={"serial": SERIAL},
            headers=platform.manufacturer,
        )  # fmt: skip
        secret = answer.json()["claim_secret"]
        expired = platform.config.claim_lifetime
        import time  # noqa: PLC0415

        time.sleep(expired.total_seconds() + 0.2)
        before = _heads(platform, DEVICE)
        refused = platform.client.post(
            "/api/v1/enrolment", json=Handpiece(DEVICE, SERIAL).enrolment(secret)
        )
        assert refused.status_code == 410
        assert "expired at" in refused.json()["detail"]
        assert _heads(platform, DEVICE) == before


@pytest.mark.parametrize(
    ("csr", "why"),
    [
        ("not a request", "not a PEM certificate signing request"),
        ("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
         "not a PEM certificate signing request"),
        (None, "subject CN must be the device id HP-000501"),
    ],
)  # fmt: skip
def test_a_malformed_request_is_refused_naming_why(
    platform: Platform, csr: str | None, why: str
) -> None:
    """422 saying what is wrong with the CSR; the claim stays usable."""
    platform.register(DEVICE)
    secret = platform.claim(DEVICE, SERIAL)
    before = _heads(platform, DEVICE)
    other = Handpiece("HP-000777", SERIAL).csr()
    body = Handpiece(DEVICE, SERIAL).enrolment(secret, csr=csr or other)
    answer = platform.client.post("/api/v1/enrolment", json=body)
    assert answer.status_code == 422
    assert why in answer.json()["detail"]
    assert _heads(platform, DEVICE) == before
    good = platform.client.post(
        "/api/v1/enrolment", json=Handpiece(DEVICE, SERIAL).enrolment(secret)
    )
    assert good.status_code == 201


def test_a_factory_certificate_enrols_a_device(sqlite_url: str, tmp_path: Path) -> None:
    """A certificate from the configured factory CA, and its key's signature over the
    enrolment, enrol the device without a claim; another CA's is refused (401)."""
    factory = create_fleet_ca(tmp_path / "factory")
    stranger = create_fleet_ca(tmp_path / "stranger")
    with running_platform(
        sqlite_url, tmp_path, factory_ca_file=tmp_path / "factory" / "ca.crt"
    ) as platform:
        platform.register(DEVICE)
        handpiece = Handpiece(DEVICE, SERIAL)
        for ca, expected in ((stranger, 401), (factory, 201)):
            factory_key = new_key_pem()
            factory_cert = _factory_certificate(ca, factory_key, DEVICE)
            csr = handpiece.csr()
            from fleet_ca import request_digest  # noqa: PLC0415

            message = enrolment_message(
                DEVICE, SERIAL, request_digest(csr), handpiece.seal.public_text
            )
            body = handpiece.enrolment(
                None, csr=csr, factory_certificate=factory_cert,
                factory_signature=b64url(sign(factory_key, message)),
            )  # fmt: skip
            answer = platform.client.post("/api/v1/enrolment", json=body)
            assert answer.status_code == expected, answer.text
        enrolled = [event for event in platform.registry(DEVICE) if event.type == "device.enrolled"]
        assert orjson.loads(enrolled[0].body)["data"]["method"] == "factory_certificate"


def _factory_certificate(ca: FleetCa, key: bytes, device_id: str) -> str:
    from fleet_ca import CheckedRequest  # noqa: PLC0415

    public = public_key_of(key)
    request = CheckedRequest(device_id, public, "")
    return ca.issue_device(request, lifetime=timedelta(days=3650)).pem.decode()
