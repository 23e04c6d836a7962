"""``checker`` judges a document exactly as ``run_checks`` does, in its fast form (one
check of one member) and in the general one."""

from typing import Any

import pytest

from schemas.validation import ModelCheck, checker, run_checks


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
