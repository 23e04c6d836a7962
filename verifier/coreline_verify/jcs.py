"""RFC 8785 (JCS) canonical JSON, written out here so the verifier depends on no
platform code and no JSON library beyond the standard one.

``canonical_json`` is the definition: ECMAScript number formatting, strings escaped
as ``JSON.stringify`` does, object members sorted by their names' UTF-16 code units.
``read_canonical`` checks that bytes are exactly their value's canonical form, on
one of three roads to the same verdict:

- ASCII text with no whitespace and no backslash, the verifier's usual case: the
  standard library's C scanner parses it, refusing on the way any number not
  written in its canonical form and any object whose members are not in order or
  not each named once.  Nothing else in such text can differ from its canonical
  form (see ``read_canonical``), so it is not written out again to compare.
- Other ASCII text: parsed the same way, then written by the standard library's C
  encoder, which writes exactly the canonical bytes for ASCII-only values whose
  numbers are integers within ±10^15 or non-integral floats whose shortest form
  needs no exponent, and compared.
- Anything else (a number the scanner cannot vouch for, non-ASCII text) goes
  through the definition.

Tests hold every road to the ``rfc8785`` reference implementation, over random
values and random alterations of their canonical bytes.
"""

import json
import json.encoder
import json.scanner
import math
import operator
from collections.abc import Callable, Iterable
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
    """Raised while scanning on the fast road for a number whose C-encoded form may
    differ from its canonical form: ``read_canonical`` then takes the definition's
    road."""


def _no_constants(text: str) -> Any:
    raise NotCanonicalError(f"{text} is not a JSON number")


_NUMBERS_KEPT: Final = 4096
_name: Final = operator.itemgetter(0)
_sorted: Final = sorted


class _Integers(dict[str, int]):
    """The canonical integers' texts already read, each with its value.  The scanner
    calls the bound ``__getitem__``, C to C, for each integer: one read before (most
    of an event's: schema versions, counts, sizes) costs a dictionary look-up, and
    only a new text costs a Python frame.  At most ``_NUMBERS_KEPT`` texts are kept,
    so that memory stays flat: when full, it starts again (the few recurring texts
    are back at once; one-off ones, a stream's seqs, would otherwise crowd them out)."""

    def __missing__(self, text: str) -> int:
        # The scanner passes a JSON integer (no leading zero): within ±10^15 it is
        # safe, and canonical unless it is "-0".  Beyond, and "-0", the definition
        # decides.
        if len(text) > 15 or text == "-0":
            raise NeedsDefinition
        if len(self) >= _NUMBERS_KEPT:
            self.clear()
        value = self[text] = int(text)
        return value


class _Floats(dict[str, float]):
    """The same for numbers with a fraction or an exponent."""

    def __missing__(self, text: str) -> float:
        value = float(text)
        # Python's repr and ECMAScript agree on non-integral numbers in [1e-4, 1e16);
        # integral floats ("40.0" against "40") and exponents differ.  Within that
        # range the text is canonical if it is the repr ("0.50", "5e-1" are not).
        if value.is_integer() or not 1e-4 <= abs(value) < 1e16 or repr(value) != text:
            raise NeedsDefinition
        if len(self) >= _NUMBERS_KEPT:
            self.clear()
        self[text] = value
        return value


def _members_in_order(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Called by the scanner for each object of plain text, with its members in the
    # text's order: canonical only if each name comes once, in order (code points
    # order ASCII names as UTF-16 code units do).  A stable sort by name leaves
    # pairs in order as they are; the dict is shorter if a name came twice.
    members = dict(pairs)
    if len(members) != len(pairs) or _sorted(pairs, key=_name) != pairs:
        raise NotCanonicalError("not in canonical form")
    return members


_read_float: Final = _Floats().__getitem__
_read_int: Final = _Integers().__getitem__
_FAST_DECODER: Final = json.JSONDecoder(
    parse_float=_read_float, parse_int=_read_int, parse_constant=_no_constants
)
_ORDER_CHECKING_DECODER: Final = json.JSONDecoder(
    parse_float=_read_float,
    parse_int=_read_int,
    parse_constant=_no_constants,
    object_pairs_hook=_members_in_order,
)
# The decoders' scanners themselves, without ``decode``'s whitespace handling around
# them: their text has none that counts.  (typeshed types the scanner's context
# oddly: hence Any.)
_FAST_SCAN: Final[Callable[[str, int], tuple[Any, int]]] = json.scanner.make_scanner(
    cast(Any, _FAST_DECODER)
)
_ORDER_CHECKING_SCAN: Final[Callable[[str, int], tuple[Any, int]]] = json.scanner.make_scanner(
    cast(Any, _ORDER_CHECKING_DECODER)
)


def _number_int(text: str) -> int | float:
    # JSON numbers are doubles to JCS: an integer beyond the safe range is the double
    # it rounds to, canonical only if written as that double is.
    value = int(text)
    return value if abs(value) <= _SAFE_INTEGER else float(value)


_PLAIN_DECODER: Final = json.JSONDecoder(parse_int=_number_int, parse_constant=_no_constants)


def _c_encoder() -> Callable[[Any, int], Iterable[str]]:
    """The standard library's C encoder, writing the chunks of a value's canonical
    form (``"".join`` them) for what ``_FAST_SCAN`` returns from ASCII text."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # an interpreter without the C accelerator: the slow, same road
        encoder = json.JSONEncoder(
            sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        )
        return lambda value, _: (encoder.encode(value),)
    # (markers, default, encoder, indent, key separator, item separator, sort_keys,
    # skipkeys, allow_nan): no cycle markers, since parsed JSON has no cycles.
    return cast(
        Callable[[Any, int], Iterable[str]],
        make(None, _not_json, json.encoder.encode_basestring, None, ":", ",", True, False, False),
    )


def _not_json(value: Any) -> Any:
    raise NotCanonicalError(f"{type(value).__name__} is not a JSON value")


_ENCODE_CHUNKS: Final = _c_encoder()
_join: Final = "".join


def parse_json(text: bytes | str) -> Any:
    """Parse JSON text, refusing ``NaN`` and ``Infinity``."""
    try:
        return _PLAIN_DECODER.decode(text if isinstance(text, str) else text.decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError) as error:
        raise NotCanonicalError(f"not JSON: {error}") from error


def read_canonical(text: bytes) -> Any:
    """Parse ``text`` and return its value if ``text`` is exactly that value's
    canonical form; raise ``NotCanonicalError`` otherwise (duplicate members,
    whitespace, other escapes or number forms, unsorted members, invalid UTF-8)."""
    try:
        if not text.isascii():
            return _read_by_definition(text.decode("utf-8"))
        decoded = text.decode("ascii")
        if (
            " " in decoded
            or "\\" in decoded
            or "\n" in decoded
            or "\r" in decoded
            or "\t" in decoded
        ):
            return _read_written_again(decoded)
        # ASCII text with no whitespace and no backslash, as events are written:
        # each string in it is written as its canonical form writes it (no character
        # in it needs an escape: not a quote or backslash, for want of a backslash,
        # nor a control character, which the scanner refuses unescaped), and nothing
        # stands between its tokens.  So it is canonical if its numbers are (the
        # number hooks see to that) and its objects' members are in order, each named
        # once (``_members_in_order``): no need to write it again to compare.
        try:
            value, end = _ORDER_CHECKING_SCAN(decoded, 0)
        except (ValueError, StopIteration) as error:
            raise NotCanonicalError("not JSON") from error
    except NeedsDefinition:
        return _read_by_definition(text.decode("ascii"))
    except UnicodeDecodeError as error:
        raise NotCanonicalError("not UTF-8") from error
    except RecursionError as error:
        raise NotCanonicalError("nested too deeply") from error
    if end != len(decoded):
        raise NotCanonicalError("not JSON: extra data")
    return value


def _read_written_again(text: str) -> Any:
    """Other ASCII text: parsed, written again by the C encoder, and compared."""
    try:
        value, end = _FAST_SCAN(text, 0)
    except (ValueError, StopIteration) as error:
        raise NotCanonicalError("not JSON") from error
    if end != len(text):
        raise NotCanonicalError("not JSON: extra data")
    if _join(_ENCODE_CHUNKS(value, 0)) != text:
        raise NotCanonicalError("not in canonical form")
    return value


def _read_by_definition(text: str) -> Any:
    value = parse_json(text)
    try:
        canonical = canonical_json(value)
    except RecursionError as error:
        raise NotCanonicalError("nested too deeply") from error
    if canonical != text.encode("utf-8"):
        raise NotCanonicalError("not in canonical form")
    return value
