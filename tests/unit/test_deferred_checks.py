"""``admission`` judges a document's fields exactly as ``run_checks`` does, in its fast
form (one check of one member) and in the general one, and counts its members."""

from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError, model_validator

from schemas.validation import ModelCheck, admission, fields_rule, run_checks


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
def test_admission_judges_as_run_checks_does(
    checks: list[tuple[tuple[str, ...], ModelCheck]],
) -> None:
    passes = admission((), checks)
    verdicts = [passes(document, document) for document in DOCUMENTS]
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
    words, and ``admission`` and ``run_checks`` run it on the plain dict itself."""
    with pytest.raises(ValidationError, match="end is before start"):
        _Span(start=2, end=1, name="a")
    assert _Span(start=1, end=1, name="a").end == 1
    checks: list[tuple[tuple[str, ...], ModelCheck]] = [(("data",), _only_check(_Span))]
    passes = admission((), checks)
    verdicts = [passes(document, document) for document in DOCUMENTS]
    assert verdicts == [run_checks(checks, document) for document in DOCUMENTS]
    assert verdicts == [True, False, True, True, True, True, True, True]


def _only_check(model: type[BaseModel]) -> ModelCheck:
    """The model's one ``after`` validator, as ``plain_schema`` defers it."""
    schema = TypeAdapter(model).core_schema
    assert schema["type"] == "function-after"
    check: ModelCheck = schema["function"]["function"]
    return check


class _ReadOnly(Mapping[str, Any]):
    """A mapping that is not a ``dict``: never counted as one."""

    def __init__(self, members: dict[str, Any]) -> None:
        self._members = members

    def __getitem__(self, key: str) -> Any:
        return self._members[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._members)

    def __len__(self) -> int:
        return len(self._members)


COUNTS: list[tuple[tuple[str | None, int], ...]] = [
    (),
    ((None, 1),),
    ((None, 1), ("data", 3)),
    (("data", 3),),
    (("data", 4),),
]
COUNTED: list[Any] = [
    *DOCUMENTS[:4],
    {"data": {"start": 1, "end": 2, "name": "a"}, "extra": 1},
    {"data": {"start": 1, "end": 2, "name": "a", "extra": 1}},
    {"data": {"start": 2, "end": 1, "name": "a", "extra": 1}},
    {"data": {"start": 1, "end": 2}},
    {"data": [1, 2, 3]},
    _ReadOnly({"data": {"start": 1, "end": 2, "name": "a"}}),
]


@pytest.mark.parametrize("counts", COUNTS)
@pytest.mark.parametrize("checks", [[], CHECKS[0], CHECKS[3]])
def test_admission_counts_members_as_the_counted_schema_requires(
    counts: tuple[tuple[str | None, int], ...], checks: list[tuple[tuple[str, ...], ModelCheck]]
) -> None:
    """A counted place holds a ``dict`` of exactly its count of members (or ``null``,
    when it is a member), and the checks hold; the document itself must be a ``dict``."""
    admits = admission(counts, checks)
    for document in COUNTED:
        assert admits(document, dict(document)) == (
            _counted(counts, document) and run_checks(checks, dict(document))
        ), document


def _counted(counts: tuple[tuple[str | None, int], ...], document: Any) -> bool:
    for member, count in counts:
        counted = document if member is None else document[member]
        if counted is not None and (type(counted) is not dict or len(counted) != count):
            return False
    return True


def test_admission_refuses_what_is_one_member_over() -> None:
    admits = admission(((None, 1), ("data", 3)), CHECKS[0])
    assert admits(DOCUMENTS[0], DOCUMENTS[0])
    assert not admits(COUNTED[4], COUNTED[4])  # the document one member over
    assert not admits(COUNTED[5], COUNTED[5])  # its data one member over
    assert not admits(DOCUMENTS[1], DOCUMENTS[1])  # the rule broken
    assert admits(DOCUMENTS[3], DOCUMENTS[3])  # a null data is not counted
