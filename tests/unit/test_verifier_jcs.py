"""The verifier's own RFC 8785 canonicalization, held to the ``rfc8785`` reference."""

import json
import re
from typing import Any

import pytest
import rfc8785
from coreline_verify import NotCanonicalError, canonical_json, ecmascript_number, read_canonical
from hypothesis import given, settings
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
# Values whose canonical form is ASCII, mostly without spaces or escapes: the road
# events take.
_ascii_text = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=8)
_ascii_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-_SAFE, max_value=_SAFE)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _ascii_text,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(_ascii_text, children, max_size=5)
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


def _as_double(text: str) -> int | float:
    # JSON numbers are doubles to JCS: an integer beyond the safe range is the double
    # it rounds to (the reference takes only exact integers, so give it the double).
    number = int(text)
    return number if abs(number) <= _SAFE else float(number)


def _reference_reads(text: bytes) -> tuple[bool, Any]:
    """Whether ``text`` is canonical by the reference: ``rfc8785`` writes the value
    ``json`` reads from it (the last of duplicate members) as exactly ``text``."""
    try:
        value = json.loads(text, parse_int=_as_double)
        return rfc8785.dumps(value) == text, value
    except (ValueError, rfc8785.CanonicalizationError, RecursionError):
        return False, None


def _alter(text: bytes, data: st.DataObject) -> bytes:
    """``text`` altered in one of the ways a writer might stray from RFC 8785."""
    kind = data.draw(st.sampled_from(["space", "drop", "escape", "number", "duplicate", "order"]))
    at = data.draw(st.integers(min_value=0, max_value=max(len(text) - 1, 0)))
    if kind == "space":
        return text[:at] + data.draw(st.sampled_from([b" ", b"\n", b"\t"])) + text[at:]
    if kind == "drop":
        return text[:at] + text[at + 1 :]
    if kind == "escape":
        char = text[at : at + 1] or b"a"
        return text[:at] + b"\\u%04x" % char[0] + text[at + 1 :]
    if kind == "number":
        written = data.draw(st.sampled_from([b".0", b"e0", b"E+0", b"0", b".50", b"-"]))
        digits = [i for i in range(len(text)) if text[i : i + 1].isdigit()]
        if not digits:
            return text + written
        place = data.draw(st.sampled_from(digits))
        return text[: place + 1] + written + text[place + 1 :]
    if kind == "duplicate":
        return re.sub(rb'\{("[^"\\]*":)', lambda m: b"{" + m[1] + b"null," + m[1], text, count=1)
    value = json.loads(text)
    unsorted = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return unsorted.encode()


@settings(max_examples=600)
@given(_values | _ascii_values, st.data())
def test_altered_bytes_are_read_exactly_as_the_reference_reads_them(
    value: Any, data: st.DataObject
) -> None:
    """Canonical bytes altered (whitespace, a dropped character, an escape, another
    number form, a duplicate member, members in another order) are accepted exactly
    when the reference finds them canonical, with the same value, on every road."""
    text = _alter(rfc8785.dumps(value), data)
    canonical, expected = _reference_reads(text)
    if canonical:
        assert read_canonical(text) == expected
    else:
        with pytest.raises(NotCanonicalError):
            read_canonical(text)


@pytest.mark.parametrize("depth", [10_000, 100_000])
def test_nesting_too_deep_to_read_is_refused_not_a_crash(depth: int) -> None:
    """Arrays nested past the interpreter's recursion limit are refused as not
    canonical, on the fast road (ASCII) and the definition's (UTF-8), instead of
    escaping as a ``RecursionError``."""
    for inner in (b"1", '"é"'.encode()):
        with pytest.raises(NotCanonicalError):
            read_canonical(b"[" * depth + inner + b"]" * depth)
