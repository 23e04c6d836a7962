"""``checker`` judges a document exactly as ``run_checks`` does, in its fast form (one
check of one member) and in the general one."""

from collections.abc import Mapping
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError, model_validator

from schemas.validation import ModelCheck, checker, fields_rule, run_checks


def _ordered(fields: Any) -> None:
    if fields.end < fields.start:
        raise ValueError("end is before start")


def _named(fields: Any) -> None:
    if not fields.name:
        # Raised, not asserted: pytest's rewritten assert reads attributes a model's
        # fields do not have.
        raise AssertionError("a name is needed")


DOCUMENTS: list[dict[str, Any]] = [
    {"data": {"start": 1, "end": 2, "name": "a"}},
    {"data": {"start": 2, "end": 1, "name": "a"}},
    {"data": {"start": 1, "end": 2, "name": ""}},
    {"data": None},
    {"data": [1, 2]},
    {},
    {"data": {"start": 1, "end": 1, "name": "x", "inner": {"start": 3, "end": 2, "name": "y"}}},
    {"data": {"start": 1, "end": 2, "name": "x", "inner": {"start": 2, "end": 3, "name": ""}}},
]
CHECKS: list[list[tuple[tuple[str, ...], ModelCheck]]] = [
    [(("data",), _ordered)],
    [(("data",), _named)],
    [(("data",), _ordered), (("data",), _named)],
    [(("data", "inner"), _ordered)],
    [(("data",), _named), (("data", "inner"), _named)],
]


@pytest.mark.parametrize("checks", CHECKS)
def test_checker_judges_as_run_checks_does(
    checks: list[tuple[tuple[str, ...], ModelCheck]],
) -> None:
    passes = checker(checks)
    verdicts = [passes(document) for document in DOCUMENTS]
    assert verdicts == [run_checks(checks, document) for document in DOCUMENTS]
    assert False in verdicts
    assert True in verdicts


def _ordered_mapping(fields: Mapping[str, Any]) -> None:
    if fields["end"] < fields["start"]:
        raise ValueError("end is before start")


class _Span(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    start: int
    end: int
    name: str

    _ordered = model_validator(mode="after")(fields_rule(_ordered_mapping))


def test_a_fields_rule_judges_the_model_and_its_plain_fields_alike() -> None:
    """A rule written over a model's fields as a mapping refuses the model in its own
    words, and ``checker`` and ``run_checks`` run it on the plain dict itself."""
    with pytest.raises(ValidationError, match="end is before start"):
        _Span(start=2, end=1, name="a")
    assert _Span(start=1, end=1, name="a").end == 1
    checks: list[tuple[tuple[str, ...], ModelCheck]] = [(("data",), _only_check(_Span))]
    passes = checker(checks)
    verdicts = [passes(document) for document in DOCUMENTS]
    assert verdicts == [run_checks(checks, document) for document in DOCUMENTS]
    assert verdicts == [True, False, True, True, True, True, True, True]


def _only_check(model: type[BaseModel]) -> ModelCheck:
    """The model's one ``after`` validator, as ``plain_schema`` defers it."""
    schema = TypeAdapter(model).core_schema
    assert schema["type"] == "function-after"
    check: ModelCheck = schema["function"]["function"]
    return check
