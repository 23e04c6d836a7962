"""The verifier's own RFC 8785 canonicalization, held to the ``rfc8785`` reference."""

import json
from typing import Any

import pytest
import rfc8785
from coreline_verify import NotCanonicalError, canonical_json, ecmascript_number, read_canonical
from hypothesis import given
from hypothesis import strategies as st

_SAFE = 2**53 - 1
_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-_SAFE, max_value=_SAFE)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
_values = st.recursive(
    _scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(), children, max_size=5)
    ),
    max_leaves=30,
)


@given(_values)
def test_canonical_form_is_the_references(value: Any) -> None:
    """For any JSON value, the verifier's canonical form is byte-identical to rfc8785's."""
    assert canonical_json(value) == rfc8785.dumps(value)


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_every_finite_float_is_written_as_ecmascript_does(number: float) -> None:
    """Every finite double is written as the reference writes it (ECMAScript rules)."""
    assert ecmascript_number(number).encode() == rfc8785.dumps(number)


@given(_values)
def test_canonical_bytes_read_back_to_their_value(value: Any) -> None:
    """The reference's bytes of any value are accepted as canonical, on either road."""
    text = rfc8785.dumps(value)
    assert canonical_json(read_canonical(text)) == text


@given(_values)
def test_other_serializations_are_refused_unless_identical(value: Any) -> None:
    """Bytes that differ from the canonical form (spacing, order, escapes) are refused."""
    canonical = rfc8785.dumps(value)
    loose = json.dumps(value, indent=1, ensure_ascii=True).encode()
    if loose == canonical:
        assert read_canonical(loose) == value
    else:
        with pytest.raises(NotCanonicalError):
            read_canonical(loose)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0.5, b"0.5"),
        (1e21, b"1e+21"),
        (1e20, b"100000000000000000000"),
        (1e-7, b"1e-7"),
        (0.000001, b"0.000001"),
        (-0.0, b"0"),
        (40.0, b"40"),
        (5e-324, b"5e-324"),
        (_SAFE, b"9007199254740991"),
        ('tab\t\u0001\u001f"\\/', b'"tab\\t\\u0001\\u001f\\"\\\\/"'),
        ("\U0001f600 \u20ac", '"\U0001f600 \u20ac"'.encode()),
        (
            {"\U0001f600": 1, "\ufb01": 2, "b": 3, "a": 4},
            '{"a":4,"b":3,"\U0001f600":1,"\ufb01":2}'.encode(),
        ),
    ],
)
def test_known_corners(value: Any, expected: bytes) -> None:
    """Integers, 0.5, 1e21, escapes, non-BMP characters and UTF-16 member order."""
    assert canonical_json(value) == expected == rfc8785.dumps(value)


@pytest.mark.parametrize(
    "text",
    [
        b'{"a":1,"a":1}',  # a duplicate member reads as one: not what was hashed
        b'{"b":1,"a":2}',
        b'{"a":1.0}',
        b'{"a":1e2}',
        b'{"a": 1}',
        b'{"a":"\\u0041"}',
        b'{"a":9007199254740993}',
        b'{"a":NaN}',
        b'{"a":"\xff"}',
    ],
)
def test_non_canonical_bytes_are_refused(text: bytes) -> None:
    """Duplicates, order, number forms, whitespace, escapes, unsafe integers, bad UTF-8."""
    with pytest.raises(NotCanonicalError):
        read_canonical(text)
