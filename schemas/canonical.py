"""RFC 8785 (JCS) canonical JSON and the SHA-256 event hash.

``rfc8785`` is the reference for canonical form, but it is pure Python (~30 µs an
event), which is most of the gateway's CPU budget at tens of thousands of events a
second.  orjson with sorted keys writes the very same bytes for the values events
are made of (ASCII keys, any strings, integers within the
IEEE-754 safe range, finite floats whose shortest form is plain decimal notation),
so those take the fast road and everything else takes the reference road.  The
equivalence is a property test (``tests/unit/test_canonical.py``), not a hope.

The gateway goes further for events that passed validation: a ``ClosedShape``,
derived once from an event type's model, knows which members can hold only strings
and checks just the others (a handful of numbers), instead of walking and rebuilding
the whole document (``tests/unit/test_canonical_shapes.py`` holds it to rfc8785).
"""

import dataclasses
import hashlib
import math
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any, Final
from uuid import UUID

import orjson
import rfc8785
from pydantic import BaseModel, BeforeValidator, PlainValidator, Strict, WrapValidator

from schemas.fields import UtcText

GENESIS_HASH: Final = "0" * 64
"""``prev_hash`` of the first event (seq 1) of every stream."""

_SAFE_INTEGER: Final = 2**53 - 1
# Outside this window ES6 number formatting (which JCS uses) switches to exponent
# notation at different thresholds than orjson's does.
_PLAIN_FLOAT_MIN: Final = 1e-4
_PLAIN_FLOAT_MAX: Final = 1e15
_RAW_INPUT_VALIDATORS: Final = (BeforeValidator, PlainValidator, WrapValidator)


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


@dataclass(frozen=True, slots=True)
class ClosedShape:
    """How to write the canonical form of documents that validated against one closed
    model (``extra="forbid"``, every member name ASCII), without the generic walk.

    Validation already fixed everything but numbers: member names are the model's
    own, so ``orjson``'s code-point sort is RFC 8785's UTF-16 sort, and members typed
    as text (strings, string enums, UUIDs, string literals) can only hold strings, which
    ``orjson`` escapes as RFC 8785 does.  So only the ``numbers`` (and any member whose
    type is not plainly text) are looked at; should one of them need ES6 number
    formatting, or hold a container, the reference road is taken for the document.
    """

    numbers: tuple[str, ...]
    """Members of the document to check as leaves."""
    nested: tuple[tuple[str, tuple[str, ...]], ...]
    """Members holding a closed sub-model, with the members of that sub-model to check."""
    write: Callable[[dict[str, Any]], bytes] = dataclasses.field(
        init=False, repr=False, compare=False
    )
    """``body`` as one function written for this shape's members (``_writer``): what
    the gateway calls for every event it receives."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "write", _writer(self.numbers, self.nested))

    @classmethod
    def of(cls, model: type[BaseModel]) -> "ClosedShape | None":
        """The shape of ``model``; ``None`` when it is not closed (then use ``canonical_json``)."""
        own = _leaves_to_check(model)
        if own is None:
            return None
        numbers: list[str] = []
        nested: list[tuple[str, tuple[str, ...]]] = []
        for name, annotation in own:
            submodel = _closed_submodel(annotation)
            if submodel is None:
                numbers.append(name)
                continue
            inner = _leaves_to_check(submodel)
            if inner is None:
                numbers.append(name)  # a container: always the reference road
                continue
            nested.append((name, tuple(leaf for leaf, _ in inner)))
        return cls(tuple(numbers), tuple(nested))

    def body(self, document: dict[str, Any]) -> bytes:
        """Canonical JSON of ``document`` minus its ``hash`` member.  ``document`` must
        have passed validation against the shape's model: that is what makes the
        unchecked members safe."""
        return self.write(document)


# Each leaf's test: the kinds events carry first, inline, then ``_plain_leaf`` for
# the rest; each inline test passes only what ``_plain_leaf`` passes.
_PLAIN_TEST: Final = (
    f"type(value) is float and {_PLAIN_FLOAT_MIN!r} <= abs(value) < {_PLAIN_FLOAT_MAX!r}"
    " and not value.is_integer()"
    f" or type(value) is int and {-_SAFE_INTEGER} <= value <= {_SAFE_INTEGER}"
    " or plain_leaf(value)"
)


def _writer(
    numbers: tuple[str, ...], nested: tuple[tuple[str, tuple[str, ...]], ...]
) -> Callable[[dict[str, Any]], bytes]:
    """``ClosedShape.body`` written out for one shape, its member names and bounds in
    its code.  It runs for every event the gateway receives, and the generic loops
    over the names (a ``map`` and a ``get`` a member, an attribute read a loop) cost
    0.3 µs an event, a third of the ``orjson`` write they guard."""
    lines = [
        "def write(document):",
        "    unsealed = document.copy()",
        "    unsealed.pop('hash', None)",
    ]
    for name in numbers:
        lines += [
            f"    value = unsealed.get({name!r})",
            f"    if not ({_PLAIN_TEST}):",
            "        return reference(unsealed)",
        ]
    for name, leaves in nested:
        lines += [f"    inner = unsealed.get({name!r})", "    if type(inner) is dict:"]
        for leaf in leaves:
            lines += [
                f"        value = inner.get({leaf!r})",
                f"        if not ({_PLAIN_TEST}):",
                "            return reference(unsealed)",
            ]
        lines += [
            "        pass",
            "    elif inner is not None:",
            "        return reference(unsealed)",
        ]
    lines.append("    return dumps(unsealed, option=SORT)")
    namespace: dict[str, Any] = {
        "plain_leaf": _plain_leaf,
        "reference": canonical_json,
        "dumps": orjson.dumps,
        "SORT": orjson.OPT_SORT_KEYS,
    }
    # Member names are a model's own field names (ASCII, checked by ``of``), quoted by repr.
    exec("\n".join(lines), namespace)  # noqa: S102
    return typing.cast(Callable[[dict[str, Any]], bytes], namespace["write"])


def _plain_leaf(value: Any) -> bool:
    """Whether ``orjson`` writes ``value`` exactly as RFC 8785 does, as a leaf."""
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return True
    plain: bool = False
    if kind is int:
        plain = -_SAFE_INTEGER <= value <= _SAFE_INTEGER
    elif kind is float:
        # The window excludes zero, infinities and NaN; integral values print as
        # integers in ES6 ("40", not "40.0").
        plain = _PLAIN_FLOAT_MIN <= abs(value) < _PLAIN_FLOAT_MAX and not value.is_integer()
    return plain


def _leaves_to_check(model: type[BaseModel]) -> list[tuple[str, Any]] | None:
    """``model``'s members that are not plainly text, or ``None`` if it is not closed."""
    if model.model_config.get("extra") != "forbid":
        return None
    decorators = model.__pydantic_decorators__
    # A validator that sees the input before the model does could let through what
    # the annotations alone would refuse: such models take the reference road.
    if any(d.info.mode != "after" for d in decorators.model_validators.values()):
        return None
    converted = {
        name
        for d in decorators.field_validators.values()
        if d.info.mode != "after"
        for name in d.info.fields
    }
    members: list[tuple[str, Any]] = []
    for name, field in model.model_fields.items():
        if not name.isascii() or field.alias not in (None, name):
            return None
        if field.validation_alias not in (None, name):
            return None
        if name in converted or not _plain_when_valid(field.annotation, field.metadata):
            members.append((name, field.annotation))
    return members


def _plain_when_valid(annotation: Any, metadata: list[Any]) -> bool:
    """Whether every value a member validates with is one ``orjson`` writes as RFC
    8785 does, so the member need not be looked at: text (a timestamp arrives as text
    or is refused), or a strict integer bounded within the safe range (strict: never
    a bool, never ``2.0``).  A validator that sees the raw input first voids both."""
    if _converts(metadata):
        return False
    if _is_text(annotation) or any(isinstance(m, UtcText) for m in metadata):
        return True
    return annotation is int and _strict(metadata) and _safe_bounds(metadata)


def _strict(metadata: list[Any]) -> bool:
    return any(isinstance(m, Strict) and m.strict for m in metadata)


def _safe_bounds(metadata: list[Any]) -> bool:
    """Whether ``metadata`` bounds an integer within ±(2**53 - 1) on both sides."""
    lower = [bound for m in metadata for bound in (getattr(m, "ge", None), getattr(m, "gt", None))
             if type(bound) is int]  # fmt: skip
    upper = [bound for m in metadata for bound in (getattr(m, "le", None), getattr(m, "lt", None))
             if type(bound) is int]  # fmt: skip
    return any(b >= -_SAFE_INTEGER for b in lower) and any(b <= _SAFE_INTEGER for b in upper)


def _converts(metadata: list[Any]) -> bool:
    """Whether a member's metadata holds a validator that runs on the raw input."""
    return any(isinstance(m, _RAW_INPUT_VALIDATORS) for m in metadata)


def _union_members(annotation: Any) -> tuple[Any, ...]:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return typing.get_args(annotation)
    return (annotation,)


def _is_text(annotation: Any) -> bool:
    """Whether a valid value of ``annotation`` parsed from JSON is a string (or null)."""
    members = _union_members(annotation)
    return all(_is_text_member(member) for member in members)


def _is_text_member(annotation: Any) -> bool:
    if annotation is type(None):
        return True
    if typing.get_origin(annotation) is typing.Literal:
        return all(type(arg) is str for arg in typing.get_args(annotation))
    if not isinstance(annotation, type):
        return False
    if issubclass(annotation, Enum):
        return issubclass(annotation, str) and all(type(m.value) is str for m in annotation)
    return annotation is str or annotation is UUID


def _closed_submodel(annotation: Any) -> type[BaseModel] | None:
    """The one model ``annotation`` names (optionally with ``None``), if it names one."""
    members = [m for m in _union_members(annotation) if m is not type(None)]
    if len(members) == 1 and isinstance(members[0], type) and issubclass(members[0], BaseModel):
        return members[0]
    return None
