"""The gateway's per-event-type canonical writers against the RFC 8785 reference."""

import typing
from collections.abc import Callable
from hashlib import sha256
from typing import Annotated, Any

import orjson
import pytest
import rfc8785
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    ValidationError,
    field_validator,
    model_validator,
)

from schemas import RejectionReason, decode_event_batch, event_hash
from schemas.canonical import ClosedShape
from schemas.device_events import DeviceEventModel
from schemas.fields import FROZEN_STRICT_SHAPE, UtcTimestamp

_SAFE = 2**53 - 1
_MODELS = typing.get_args(DeviceEventModel)
_json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-_SAFE, max_value=_SAFE)
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from([0.0, -0.0, 2.0, 1e-7, 1e21, 123456789012345680.0, 0.1, 1.5])
    | st.text()
)
_json_values = st.recursive(
    _json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=12,
)
_unchecked = st.text() | st.integers(min_value=-_SAFE, max_value=_SAFE)
"""What validation leaves in a member the shape does not check."""


def _document(
    draw: Callable[[st.SearchStrategy[Any]], Any], model: type[BaseModel], shape: ClosedShape
) -> dict[str, Any]:
    """A document in ``model``'s member names: the members the shape checks hold any
    JSON value, the others text or safe integers, as validation would leave them."""
    nested = dict(shape.nested)
    document: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        if name in nested:
            submodel = typing.cast(type[BaseModel], field.annotation)
            document[name] = {
                inner: draw(_json_values if inner in nested[name] else _unchecked)
                for inner in submodel.model_fields
            }
        elif name in shape.numbers:
            document[name] = draw(_json_values)
        else:
            document[name] = draw(_unchecked)
    return document


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_closed_shapes_write_exactly_what_the_reference_writes(data: st.DataObject) -> None:
    """For every device event type, whatever its number members hold, the shape's
    canonical body is byte-identical to rfc8785 over the event without ``hash``."""
    model = data.draw(st.sampled_from(_MODELS))
    shape = ClosedShape.of(model)
    assert shape is not None, model.__name__
    document = _document(data.draw, model, shape)
    _writes_the_reference(shape.body, document)


def test_every_device_event_type_has_a_closed_shape() -> None:
    """No device event type falls back to the generic walk for its whole document."""
    shapes = {model.__name__: ClosedShape.of(model) for model in _MODELS}
    assert [name for name, shape in shapes.items() if shape is None] == []
    cores = ClosedShape.of(next(m for m in _MODELS if m.__name__ == "CoresPunched"))
    assert cores is not None
    # Counts are strict integers bounded by 2**53 - 1 and timestamps arrive as text
    # (or are refused): validation leaves only the depth, a float, to look at.
    assert dict(cores.nested)["data"] == ("depth_mm",)
    assert cores.numbers == ("schema_version",)  # Literal[1] lets 1.0 through


def test_only_strict_safely_bounded_integers_go_unchecked() -> None:
    """An integer member is left unchecked only when validation keeps out bools,
    floats and anything beyond 2**53 - 1 in either direction."""

    class Integers(BaseModel):
        model_config = FROZEN_STRICT_SHAPE
        count: Annotated[int, Strict(), Field(ge=0, le=2**53 - 1)]
        small: Annotated[int, Field(strict=True, gt=-5, lt=5)]
        lax: Annotated[int, Field(ge=0, le=10)]
        unbounded: Annotated[int, Strict(), Field(ge=0)]
        too_wide: Annotated[int, Strict(), Field(ge=0, le=2**53)]
        below: Annotated[int, Strict(), Field(ge=-(2**53), le=0)]

    assert ClosedShape.of(Integers) == ClosedShape(("lax", "unbounded", "too_wide", "below"), ())
    for refused in (True, 2.0, 2**53):
        with pytest.raises(ValidationError):
            Integers.model_validate(
                {"count": refused, "small": 1, "lax": 1, "unbounded": 1, "too_wide": 1, "below": 0}
            )


def test_timestamps_are_text_or_refused() -> None:
    """A timestamp member goes unchecked because its validator refuses anything but
    text before the datetime is parsed; another raw-input validator is still checked."""

    class Stamped(BaseModel):
        model_config = FROZEN_STRICT_SHAPE
        at: UtcTimestamp
        when: Annotated[UtcTimestamp, BeforeValidator(lambda value: value)]

    assert ClosedShape.of(Stamped) == ClosedShape(("when",), ())
    for refused in (1700000000, 1700000000.5, None):
        with pytest.raises(ValidationError):
            Stamped.model_validate({"at": refused, "when": "2026-11-24T09:00:08.000Z"})


def test_open_models_have_no_shape() -> None:
    """A model that lets unknown members through, or sees its input before its
    annotations do, is written by the generic walk."""

    class Open(BaseModel):
        model_config = ConfigDict(extra="allow")
        name: str

    class Rewritten(BaseModel):
        model_config = FROZEN_STRICT_SHAPE
        name: str

        @model_validator(mode="before")
        @classmethod
        def _drop_unknown(cls, value: Any) -> Any:
            return {"name": value["name"]} if isinstance(value, dict) else value

    class Prepared(BaseModel):
        model_config = FROZEN_STRICT_SHAPE
        name: str

        @field_validator("name", mode="before")
        @classmethod
        def _text(cls, value: Any) -> Any:
            return str(value)

    class Coerced(BaseModel):
        model_config = FROZEN_STRICT_SHAPE
        name: Annotated[str, BeforeValidator(str)]
        label: str

    assert ClosedShape.of(Open) is None
    assert ClosedShape.of(Rewritten) is None
    # A text member whose raw input may be anything is checked like a number.
    assert ClosedShape.of(Prepared) == ClosedShape(("name",), ())
    assert ClosedShape.of(Coerced) == ClosedShape(("name",), ())


class _Reading(BaseModel):
    model_config = FROZEN_STRICT_SHAPE
    level: float
    unit: str


class _Sample(BaseModel):
    model_config = FROZEN_STRICT_SHAPE
    ratio: float
    count: int
    first: _Reading | None
    second: _Reading | None = None


_SAMPLE_SHAPE = ClosedShape.of(_Sample)


@settings(max_examples=300, deadline=None)
@given(
    ratio=_json_values,
    count=_json_values,
    first=_json_scalars | st.fixed_dictionaries({"level": _json_values, "unit": _unchecked}),
    second=st.sampled_from(["absent", None]) | st.fixed_dictionaries({"level": _json_values}),
)
@example(ratio=0.5, count=3, first={"level": 2.0, "unit": "mm"}, second={"level": 1e-7})
@example(ratio=40.0, count=True, first=None, second="absent")
@example(ratio=1.5, count=2**53, first=7, second={"level": 0.25})
def test_written_shapes_match_the_reference_member_by_member(
    ratio: Any, count: Any, first: Any, second: Any
) -> None:
    """A shape with two numbers and two optional sub-models, each holding its members,
    null, another scalar or (the second) nothing, writes what rfc8785 writes."""
    assert _SAMPLE_SHAPE is not None
    assert _SAMPLE_SHAPE.numbers == ("ratio", "count")
    assert _SAMPLE_SHAPE.nested == (("first", ("level",)), ("second", ("level",)))
    document: dict[str, Any] = {"hash": "h", "ratio": ratio, "count": count, "first": first}
    if second != "absent":
        document["second"] = second
    _writes_the_reference(_SAMPLE_SHAPE.write, document)


def _cores_punched(depth: Any, seq: int = 1) -> dict[str, Any]:
    event: dict[str, Any] = {
        "event_id": "9e05b47b-9d87-5f03-8aec-93efe39eeecd",
        "device_id": "HP-000011",
        "seq": seq,
        "occurred_at": "2026-11-24T09:00:08.000Z",
        "schema_version": 1,
        "prev_hash": "0" * 64,
        "type": "cores.punched",
        "data": {
            "session_id": "6f1c2a4e-6d1f-4c3e-9a7e-2f1f0c9d8e11",
            "cartridge_id": "CT-00001",
            "actuations": 12,
            "cores": 36,
            "depth_mm": depth,
            "window_start": "2026-11-24T09:00:06.000Z",
            "window_end": "2026-11-24T09:00:08.000Z",
        },
    }
    event["hash"] = event_hash(event)
    return event


@pytest.mark.parametrize("depth", [2.0, 1.5, 0.1, 5])
def test_decoded_bodies_are_the_reference_bytes(depth: float) -> None:
    """An event decodes to exactly the rfc8785 bytes of its members, whether its
    numbers take the fast road (1.5) or need ES6 formatting (2.0 is written 2)."""
    event = _cores_punched(depth)
    payload = orjson.dumps({"device_id": "HP-000011", "events": [event]})
    decoded = decode_event_batch("HP-000011", payload)
    assert decoded.rejections == ()
    unsealed = {key: value for key, value in event.items() if key != "hash"}
    assert decoded.events[0].body == rfc8785.dumps(unsealed)


def test_a_hash_over_non_canonical_numbers_is_refused() -> None:
    """A device that hashed ``2.0`` as orjson writes it, not as RFC 8785 does, is
    refused for integrity: the fast road never accepts what the reference refuses."""
    event = _cores_punched(2.0)
    unsealed = {key: value for key, value in event.items() if key != "hash"}
    event["hash"] = sha256(orjson.dumps(unsealed, option=orjson.OPT_SORT_KEYS)).hexdigest()
    payload = orjson.dumps({"device_id": "HP-000011", "events": [event]})
    decoded = decode_event_batch("HP-000011", payload)
    assert decoded.events == ()
    assert [r.reason for r in decoded.rejections] == [RejectionReason.INTEGRITY]


def _writes_the_reference(
    write: Callable[[dict[str, Any]], bytes], document: dict[str, Any]
) -> None:
    """``write`` gives rfc8785's bytes for ``document`` without its ``hash``, or refuses
    as rfc8785 does, and leaves the caller's ``document`` as it was."""
    unsealed = {key: value for key, value in document.items() if key != "hash"}
    before = dict(document)
    try:
        reference = rfc8785.dumps(unsealed)
    except ValueError as refusal:  # integers beyond 2**53: no canonical form
        with pytest.raises(type(refusal)):
            write(document)
    else:
        assert write(document) == reference
    assert document == before
