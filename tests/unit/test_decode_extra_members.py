"""The gateway refuses an event's extra members by counting them, not by pydantic-core's
``forbid``: an event or ``data`` with one member too many is still refused, with the
models' words, and the counts hold only where every member is required."""

import copy
from typing import Any

import pytest
from pydantic import ValidationError
from pydantic_core import SchemaValidator, core_schema

from schemas import Rejection, RejectionReason, decode_device_event, event_hash
from schemas.decode import _COUNTS, _validate_plain
from schemas.validation import counted_extras
from tests.unit.test_decode_equivalence import _DATA, _DEVICE, _base, _reference, _same


def _with_extra(event_type: str, where: str, *, rehash: bool = True) -> dict[str, Any]:
    raw = _base(event_type)
    target = raw if where == "event" else raw["data"]
    target["extra"] = 1
    if rehash:
        raw["hash"] = event_hash(raw)
    return raw


@pytest.mark.parametrize("event_type", sorted(_DATA))
@pytest.mark.parametrize("where", ["event", "data"])
def test_an_extra_member_is_refused_as_the_models_refuse_it(event_type: str, where: str) -> None:
    """With a hash over the extra member (so nothing else refuses the event), an
    extra member of the event or of its ``data`` is a ``schema`` refusal naming it."""
    raw = _with_extra(event_type, where)
    if (None if where == "event" else "data") in dict(_COUNTS[event_type]):
        _validate_plain(copy.deepcopy(raw))  # counted: pydantic-core lets it through
    outcome = decode_device_event(_DEVICE, copy.deepcopy(raw))
    _same(outcome, _reference(_DEVICE, copy.deepcopy(raw)))
    assert isinstance(outcome, Rejection)
    assert outcome.reason is RejectionReason.SCHEMA
    assert "extra" in outcome.detail
    assert "Extra inputs are not permitted" in outcome.detail


def test_a_missing_member_beside_an_extra_one_is_refused() -> None:
    """Same count, other members: one missing and one extra is refused, not counted as whole."""
    raw = _base("cores.punched")
    del raw["data"]["cores"]
    raw["data"]["extra"] = 36
    raw["hash"] = event_hash(raw)
    outcome = decode_device_event(_DEVICE, copy.deepcopy(raw))
    _same(outcome, _reference(_DEVICE, copy.deepcopy(raw)))
    assert isinstance(outcome, Rejection)
    assert outcome.reason is RejectionReason.SCHEMA


def test_counts_hold_only_where_every_member_is_required() -> None:
    """Every event is counted; a ``data`` with an optional member keeps pydantic-core's
    own refusal of extra members (``command.acknowledged``'s ``result``)."""
    assert all(counts[0] == (None, 9) for counts in _COUNTS.values())
    assert dict(_COUNTS["cores.punched"]) == {None: 9, "data": 7}
    assert "data" not in dict(_COUNTS["command.acknowledged"])
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        _validate_plain(_with_extra("command.acknowledged", "data"))


def test_counted_extras_relaxes_only_countable_typed_dicts() -> None:
    """A typed dict with an optional or renamed member, or one that is itself an
    optional or renamed member, is left refusing extra members and not counted; a
    nullable counted member may be ``null``."""
    inner = core_schema.typed_dict_schema(
        {"a": core_schema.typed_dict_field(core_schema.int_schema())}, extra_behavior="forbid"
    )
    optional = core_schema.typed_dict_schema(
        {"a": core_schema.typed_dict_field(core_schema.int_schema(), required=False)},
        extra_behavior="forbid",
    )
    aliased = core_schema.typed_dict_schema(
        {"a": core_schema.typed_dict_field(core_schema.int_schema(), validation_alias="A")},
        extra_behavior="forbid",
    )
    choice = core_schema.typed_dict_schema(
        {
            "type": core_schema.typed_dict_field(core_schema.literal_schema(["t"])),
            "inner": core_schema.typed_dict_field(core_schema.nullable_schema(inner)),
            "optional": core_schema.typed_dict_field(optional),
            "aliased": core_schema.typed_dict_field(aliased),
            "open": core_schema.typed_dict_field(core_schema.typed_dict_schema({})),
            "renamed": core_schema.typed_dict_field(inner, validation_alias="Renamed"),
            "left_out": core_schema.typed_dict_field(
                core_schema.with_default_schema(inner, default=None), required=False
            ),
        },
        extra_behavior="forbid",
    )
    schema, counts = counted_extras(core_schema.tagged_union_schema({"t": choice}, "type"))
    # Neither an optional member nor a renamed one is counted (nor, then, the event).
    assert counts == {"t": (("inner", 1),)}
    validate = SchemaValidator(schema).validate_python
    document: dict[str, Any] = {
        "type": "t",
        "inner": {"a": 1, "b": 2},
        "optional": {},
        "aliased": {"A": 1},
        "open": {"x": 1},
        "Renamed": {"a": 1},
    }
    assert validate(document)["inner"] == {"a": 1}  # counted, so let through
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        validate({**document, "more": 1})
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        validate({**document, "Renamed": {"a": 1, "b": 2}})
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        validate({**document, "left_out": {"a": 1, "b": 2}})
    assert validate({**document, "inner": None})["inner"] is None
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        validate({**document, "optional": {"z": 1}})
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        validate({**document, "aliased": {"A": 1, "a": 1}})
