"""RFC 8785 (JCS) canonical JSON and the SHA-256 event hash.

``rfc8785`` is the reference for canonical form, but it is pure Python (~30 µs an
event), which is most of the gateway's CPU budget at tens of thousands of events a
second.  orjson with sorted keys writes the very same bytes for the values events
are made of (ASCII keys, any strings, integers within the
IEEE-754 safe range, finite floats whose shortest form is plain decimal notation),
so those take the fast road and everything else takes the reference road.  The
equivalence is a property test (``tests/unit/test_canonical.py``), not a hope.
"""

import hashlib
import math
from collections.abc import Mapping
from typing import Any, Final

import orjson
import rfc8785

GENESIS_HASH: Final = "0" * 64
"""``prev_hash`` of the first event (seq 1) of every stream."""

_SAFE_INTEGER: Final = 2**53 - 1
# Outside this window ES6 number formatting (which JCS uses) switches to exponent
# notation at different thresholds than orjson's does.
_PLAIN_FLOAT_MIN: Final = 1e-4
_PLAIN_FLOAT_MAX: Final = 1e15


class _NeedsReference(Exception):  # noqa: N818 - control flow, never escapes the module
    """Raised inside the fast path when a value's canonical form may differ."""


def canonical_json(value: Any) -> bytes:
    """Return the RFC 8785 canonical JSON encoding of a JSON-shaped value."""
    try:
        return orjson.dumps(_fast_form(value), option=orjson.OPT_SORT_KEYS)
    except _NeedsReference:
        return rfc8785.dumps(value)


def event_hash(event: Mapping[str, Any]) -> str:
    """SHA-256 hex of the canonical JSON of ``event`` without its ``hash`` member."""
    return hashlib.sha256(canonical_body(event)).hexdigest()


def canonical_body(event: Mapping[str, Any]) -> bytes:
    """The bytes an event's ``hash`` is computed over: the event minus ``hash``, canonical."""
    return canonical_json({key: value for key, value in event.items() if key != "hash"})


def sha256_hex(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def _fast_form(value: Any) -> Any:
    # Exact type checks: JSON decoders only produce these types, and ``type() is`` is
    # several times cheaper than ``isinstance`` on the gateway's hottest path.
    kind = type(value)
    if kind is str or kind is bool or value is None:
        # orjson escapes control characters exactly as RFC 8785 does (a property test
        # holds it to that), so strings need no inspection.
        return value
    if kind is int:
        if -_SAFE_INTEGER <= value <= _SAFE_INTEGER:
            return value
        raise _NeedsReference
    if kind is float:
        return _fast_float(value)
    if kind is dict:
        for key in value:
            # Non-ASCII keys: RFC 8785 sorts by UTF-16 code units, orjson by code points.
            if type(key) is not str or not key.isascii():
                raise _NeedsReference
        return {key: _fast_form(item) for key, item in value.items()}
    if kind is list or kind is tuple:
        return [_fast_form(item) for item in value]
    if isinstance(value, Mapping):  # a read-only view, say: rare, so the slower check
        return _fast_form(dict(value))
    raise _NeedsReference


def _fast_float(value: float) -> float | int:
    if not math.isfinite(value):
        raise _NeedsReference
    if value.is_integer():
        # ES6 prints 40.0 as "40"; orjson would print "40.0".
        if abs(value) <= _SAFE_INTEGER:
            return int(value)
        raise _NeedsReference
    if _PLAIN_FLOAT_MIN <= abs(value) < _PLAIN_FLOAT_MAX:
        return value
    raise _NeedsReference
