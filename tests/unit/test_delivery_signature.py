"""Webhook secrets are derived, never stored, and signatures verify exactly what
was sent."""

import hashlib
import hmac

from hypothesis import given
from hypothesis import strategies as st

from services.delivery import derive_secret, sign, signed_headers, verify_signature

MASTER_KEY = b"k" * 32
SECRET = derive_secret(MASTER_KEY, "wh-1", 1)
BODY = b'{"alert_id":"a","state":"raised"}'


def test_signature_is_the_documented_hmac() -> None:
    """``sha256=`` + hex HMAC-SHA256(secret, "{timestamp}." + body): what a receiver
    in any language recomputes."""
    expected = hmac.new(SECRET.encode(), b"1764000000." + BODY, hashlib.sha256).hexdigest()
    assert sign(SECRET, 1764000000, BODY) == f"sha256={expected}"


@given(body=st.binary(max_size=512), timestamp=st.integers(min_value=0, max_value=2**40))
def test_what_is_signed_verifies(body: bytes, timestamp: int) -> None:
    """Any body signed at any time verifies, with the timestamp as a header string."""
    assert verify_signature(SECRET, str(timestamp), body, sign(SECRET, timestamp, body))


def test_changed_body_timestamp_or_secret_fails() -> None:
    """Tampering with the body or timestamp, or the wrong secret, fails verification."""
    header = sign(SECRET, 1764000000, BODY)
    assert not verify_signature(SECRET, 1764000000, BODY + b" ", header)
    assert not verify_signature(SECRET, 1764000001, BODY, header)
    assert not verify_signature(derive_secret(MASTER_KEY, "wh-1", 2), 1764000000, BODY, header)


def test_malformed_headers_fail() -> None:
    """A header without the scheme, a bare digest or a non-numeric timestamp fails."""
    header = sign(SECRET, 1764000000, BODY)
    assert not verify_signature(SECRET, 1764000000, BODY, header.removeprefix("sha256="))
    assert not verify_signature(SECRET, 1764000000, BODY, "sha256=")
    assert not verify_signature(SECRET, "soon", BODY, header)


def test_stale_timestamps_fail_when_the_receiver_gives_its_clock() -> None:
    """With ``now`` given, a request older than the tolerance is refused as a replay."""
    header = sign(SECRET, 1764000000, BODY)
    assert verify_signature(SECRET, 1764000000, BODY, header, now=1764000000 + 299)
    assert not verify_signature(SECRET, 1764000000, BODY, header, now=1764000000 + 301)


def test_secrets_differ_by_webhook_version_and_master_key() -> None:
    """Rotation (a new version), another webhook or another master key each give a
    different secret; the same inputs always give the same one."""
    assert derive_secret(MASTER_KEY, "wh-1", 1) == SECRET
    others = {
        derive_secret(MASTER_KEY, "wh-1", 2),
        derive_secret(MASTER_KEY, "wh-2", 1),
        derive_secret(b"m" * 32, "wh-1", 1),
    }
    assert SECRET not in others
    assert len(others) == 3


def test_headers_name_the_event_and_sign_the_body() -> None:
    """The request headers carry the content type, event id, timestamp and signature."""
    headers = signed_headers(SECRET, 1764000000, BODY, "e-1")
    assert headers == {
        "Content-Type": "application/json",
        "X-Coreline-Event": "e-1",
        "X-Coreline-Timestamp": "1764000000",
        "X-Coreline-Signature": sign(SECRET, 1764000000, BODY),
    }
