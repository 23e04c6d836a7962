"""RFC 8785 (JCS) canonical JSON, written out here so the verifier depends on no
platform code and no JSON library beyond the standard one.

Two roads to the same bytes.  ``canonical_json`` is the definition: ECMAScript
number formatting, strings escaped as ``JSON.stringify`` does, object members sorted
by their names' UTF-16 code units.  ``read_canonical`` is the fast road the verifier
takes for each event: the standard library's C encoder writes exactly those bytes
for ASCII-only documents whose numbers are integers within ±10^15 or non-integral
floats whose shortest form needs no exponent, and anything else (detected while
parsing, at no cost to the common case) goes through the definition.  Tests hold
both roads to the ``rfc8785`` reference implementation, over random values.
"""

import json
import json.encoder
import json.scanner
import math
from collections.abc import Callable
from typing import Any, Final, cast

from coreline_verify.errors import NotCanonicalError

_SAFE_INTEGER: Final = 2**53 - 1
"""JCS numbers are IEEE-754 doubles: integers beyond this are not exact."""

_ESCAPES: Final = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
}


def canonical_json(value: Any) -> bytes:
    """The RFC 8785 canonical form of a JSON value (``dict``, ``list``, ``str``,
    ``int``, ``float``, ``bool``, ``None``); raises ``NotCanonicalError`` for values
    JCS cannot represent (non-finite floats, unsafe integers, lone surrogates)."""
    parts: list[str] = []
    _write(value, parts)
    try:
        return "".join(parts).encode("utf-8")
    except UnicodeEncodeError as error:
        raise NotCanonicalError("a string holds a lone surrogate") from error


def _write(value: Any, parts: list[str]) -> None:
    if value is None:
        parts.append("null")
    elif value is True:
        parts.append("true")
    elif value is False:
        parts.append("false")
    elif isinstance(value, str):
        parts.append(_string(value))
    elif isinstance(value, int):
        if abs(value) > _SAFE_INTEGER:
            raise NotCanonicalError(f"{value} is outside the safe integer range")
        parts.append(str(value))
    elif isinstance(value, float):
        parts.append(ecmascript_number(value))
    elif isinstance(value, dict):
        _write_object(value, parts)
    elif isinstance(value, list | tuple):
        parts.append("[")
        for position, item in enumerate(value):
            if position:
                parts.append(",")
            _write(item, parts)
        parts.append("]")
    else:
        raise NotCanonicalError(f"{type(value).__name__} is not a JSON value")


def _write_object(value: dict[Any, Any], parts: list[str]) -> None:
    parts.append("{")
    for position, name in enumerate(sorted(value, key=_utf16_order)):
        if position:
            parts.append(",")
        parts.append(_string(name))
        parts.append(":")
        _write(value[name], parts)
    parts.append("}")


def _utf16_order(name: str) -> bytes:
    if not isinstance(name, str):
        raise NotCanonicalError("object member names must be strings")
    try:
        # Big-endian UTF-16 bytes compare exactly as the code units do.
        return name.encode("utf-16-be")
    except UnicodeEncodeError as error:
        raise NotCanonicalError("a member name holds a lone surrogate") from error


def _string(text: str) -> str:
    out = ['"']
    for char in text:
        escaped = _ESCAPES.get(char)
        if escaped is not None:
            out.append(escaped)
        elif char < " ":
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


def ecmascript_number(value: float) -> str:
    """ECMAScript's Number::toString (ECMA-262 §6.1.6.1.20), as JCS requires."""
    if not math.isfinite(value):
        raise NotCanonicalError(f"{value} is not a JSON number")
    if value == 0:
        return "0"  # -0 too
    sign = "-" if value < 0 else ""
    # repr gives the shortest digits that round-trip, which is what ECMAScript uses;
    # only the notation differs, so take the digits and the decimal point from it.
    mantissa, _, exponent_text = repr(abs(value)).partition("e")
    whole, _, fraction = mantissa.partition(".")
    every_digit = whole + fraction
    leading_zeros = len(every_digit) - len(every_digit.lstrip("0"))
    digits = every_digit.strip("0")
    k = len(digits)
    n = len(whole) - leading_zeros + int(exponent_text or 0)
    # value = 0.digits × 10^n, in ECMA-262's terms s × 10^(n-k) with k digits.
    if k <= n <= 21:
        return sign + digits + "0" * (n - k)
    if 0 < n <= 21:
        return sign + digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return sign + "0." + "0" * -n + digits
    exponent = n - 1
    exponent_part = f"e{'+' if exponent >= 0 else '-'}{abs(exponent)}"
    if k == 1:
        return sign + digits + exponent_part
    return sign + digits[0] + "." + digits[1:] + exponent_part


class NeedsDefinition(Exception):  # noqa: N818 - control flow, not a failure
    """Raised by ``fast_parse`` for a number whose C-encoded form may differ from its
    canonical form: the caller then takes the road of the definition."""


def _plain_float(text: str) -> float:
    value = float(text)
    # Python's repr and ECMAScript agree on non-integral numbers in [1e-4, 1e16);
    # integral floats ("40.0" against "40") and exponents differ.
    if value.is_integer() or not 1e-4 <= abs(value) < 1e16:
        raise NeedsDefinition
    return value


def _no_constants(text: str) -> Any:
    raise NotCanonicalError(f"{text} is not a JSON number")


def _plain_int(text: str) -> int:
    # Beyond ±10^15 the safe-integer rule needs checking: the definition's road.  (A
    # hook per integer measured cheaper than scanning the text for long digit runs.)
    if len(text) > 15:
        raise NeedsDefinition
    return int(text)


_FAST_DECODER: Final = json.JSONDecoder(
    parse_float=_plain_float, parse_int=_plain_int, parse_constant=_no_constants
)
# The decoder's scanner itself, without ``decode``'s whitespace handling around it:
# bundle lines have none.  (typeshed types the scanner's context oddly: hence Any.)
_FAST_SCAN: Final[Callable[[str, int], tuple[Any, int]]] = json.scanner.make_scanner(
    cast(Any, _FAST_DECODER)
)


def _number_int(text: str) -> int | float:
    # JSON numbers are doubles to JCS: an integer beyond the safe range is the double
    # it rounds to, canonical only if written as that double is.
    value = int(text)
    return value if abs(value) <= _SAFE_INTEGER else float(value)


_PLAIN_DECODER: Final = json.JSONDecoder(parse_int=_number_int, parse_constant=_no_constants)


def _c_encoder() -> Callable[[Any], str]:
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # an interpreter without the C accelerator: the slow, same road
        encoder = json.JSONEncoder(
            sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        )
        return encoder.encode
    # (markers, default, encoder, indent, key separator, item separator, sort_keys,
    # skipkeys, allow_nan): no cycle markers, since parsed JSON has no cycles.
    iterencode = make(
        None, _not_json, json.encoder.encode_basestring, None, ":", ",", True, False, False
    )
    return lambda value: "".join(iterencode(value, 0))


def _not_json(value: Any) -> Any:
    raise NotCanonicalError(f"{type(value).__name__} is not a JSON value")


_ENCODE: Final = _c_encoder()


def parse_json(text: bytes | str) -> Any:
    """Parse JSON text, refusing ``NaN`` and ``Infinity``."""
    try:
        return _PLAIN_DECODER.decode(text if isinstance(text, str) else text.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as error:
        raise NotCanonicalError(f"not JSON: {error}") from error


def fast_parse(text: str) -> Any:
    """Parse ASCII JSON text whose numbers the C encoder writes canonically; raises
    ``NeedsDefinition`` for any other number, ``NotCanonicalError`` for non-JSON."""
    try:
        value, end = _FAST_SCAN(text, 0)
    except NeedsDefinition:
        raise
    except (ValueError, StopIteration) as error:
        raise NotCanonicalError("not JSON") from error
    if end != len(text):
        raise NotCanonicalError("not JSON: extra data")
    return value


def fast_encode(value: Any) -> str:
    """The canonical form of a value ``fast_parse`` returned from ASCII text."""
    return _ENCODE(value)


def read_canonical(text: bytes) -> Any:
    """Parse ``text`` and return its value if ``text`` is exactly that value's
    canonical form; raise ``NotCanonicalError`` otherwise (duplicate members,
    whitespace, other escapes or number forms, unsorted members, invalid UTF-8)."""
    try:
        decoded = text.decode("utf-8")
    except UnicodeDecodeError as error:
        raise NotCanonicalError("not UTF-8") from error
    if text.isascii():
        try:
            value = fast_parse(decoded)
        except NeedsDefinition:
            pass
        else:
            if _ENCODE(value) != decoded:
                raise NotCanonicalError("not in canonical form")
            return value
    value = parse_json(decoded)
    if canonical_json(value) != text:
        raise NotCanonicalError("not in canonical form")
    return value
