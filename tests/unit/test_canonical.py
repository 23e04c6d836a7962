"""Canonical JSON (RFC 8785) and the event hash."""

from pathlib import Path
from typing import Any

import rfc8785
from hypothesis import given
from hypothesis import strategies as st

from schemas import canonical_json, event_hash
from tests.support.vectors import STREAM_DEVICES, load_stream

_SAFE = 2**53 - 1
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-_SAFE, max_value=_SAFE)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(), children, max_size=5)
    ),
    max_leaves=30,
)


@given(json_values)
def test_fast_path_writes_exactly_what_the_reference_writes(value: Any) -> None:
    """For any JSON value, canonical_json is byte-identical to the rfc8785 reference."""
    assert canonical_json(value) == rfc8785.dumps(value)


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_every_finite_float_matches_the_reference(number: float) -> None:
    """Floats are where serializers differ most: every finite double agrees."""
    assert canonical_json({"x": number}) == rfc8785.dumps({"x": number})


def test_integral_floats_are_written_as_integers() -> None:
    """40.0 canonicalizes to 40, as ES6 number formatting does."""
    assert canonical_json({"area_cm2": 40.0}) == b'{"area_cm2":40}'


def test_keys_are_sorted_and_whitespace_removed() -> None:
    """Member order and spacing never change the canonical bytes."""
    assert (
        canonical_json({"b": 1, "a": [1, {"d": 2, "c": None}]})
        == b'{"a":[1,{"c":null,"d":2}],"b":1}'
    )


def test_vector_hashes_are_reproduced(vectors_dir: Path) -> None:
    """Every event of the independent vectors hashes to the hash it carries."""
    for device_id in STREAM_DEVICES:
        for event in load_stream(vectors_dir, device_id)["events"]:
            assert event_hash(event) == event["hash"], (device_id, event["seq"])


def test_hash_ignores_only_the_hash_member() -> None:
    """The hash covers every member but ``hash``; changing any other member changes it."""
    event = {"seq": 1, "data": {"cores": 3}, "hash": "x"}
    assert event_hash(event) == event_hash({**event, "hash": "y"})
    assert event_hash(event) != event_hash({**event, "data": {"cores": 4}})
