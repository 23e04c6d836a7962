"""The gateway leaves ``hash``'s form (64 lower-case hex digits) to the hash check: an
event whose hash is malformed is still refused for its form, with the models' words,
whatever else is wrong with it, and never stored."""

import copy
from typing import Any

import pytest

from schemas import Rejection, RejectionReason, decode_device_event, event_hash
from schemas.decode import _validate_plain
from tests.unit.test_decode_equivalence import _DEVICE, _base, _reference, _same

_BAD_FORMS = ["A" * 64, "a" * 63, "a" * 65, "g" * 64, "", " " + "a" * 63, "a" * 64 + "\n"]


def _variants(form: str) -> dict[str, dict[str, Any]]:
    """An event whose hash has ``form``, alone or beside another fault that would
    be refused for another reason after validation."""
    alone = _base("cores.punched")
    alone["hash"] = form
    other_device = copy.deepcopy(alone)
    other_device["device_id"] = "HP-000012"
    genesis = _base("cores.punched", 1)
    genesis["prev_hash"] = "b" * 64
    genesis["hash"] = form
    beyond_canonical = copy.deepcopy(alone)
    beyond_canonical["data"]["depth_mm"] = 1e400
    return {"alone": alone, "other device": other_device, "genesis": genesis,
            "beyond canonical": beyond_canonical}  # fmt: skip


@pytest.mark.parametrize("form", _BAD_FORMS)
def test_a_malformed_hash_is_refused_for_its_form(form: str) -> None:
    for name, raw in _variants(form).items():
        reference = _reference(_DEVICE, copy.deepcopy(raw))
        outcome = decode_device_event(_DEVICE, copy.deepcopy(raw))
        _same(outcome, reference)
        assert isinstance(outcome, Rejection), name
        assert outcome.reason is RejectionReason.SCHEMA, name
        assert "hash" in outcome.detail, (name, outcome.detail)


def test_the_digest_it_must_equal_is_what_admits_an_event() -> None:
    raw = _base("cores.punched")
    _validate_plain({**raw, "hash": "A" * 64})  # the form alone is not checked here
    raw["hash"] = event_hash(raw).upper()
    outcome = decode_device_event(_DEVICE, raw)
    assert isinstance(outcome, Rejection)
    assert outcome.reason is RejectionReason.SCHEMA
    assert outcome.detail.startswith("cores.punched.hash: String should match pattern")
