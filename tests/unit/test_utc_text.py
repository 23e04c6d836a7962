"""Timestamps on the wire: RFC 3339 in UTC with a ``Z``, judged inside pydantic-core."""

from datetime import UTC, datetime
from typing import Annotated, Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, BeforeValidator, ValidationError

from schemas.fields import UtcTimestamp
from schemas.validation import describe


def _utc_text_as_a_python_validator(value: Any) -> Any:
    """The rule as it was first written: the reference the core schema must match."""
    if not isinstance(value, str):
        raise ValueError("timestamp must be an RFC 3339 string")  # noqa: TRY004
    if not value.endswith("Z") or "T" not in value:
        raise ValueError(
            "timestamp must be RFC 3339 UTC ending in 'Z', e.g. 2026-11-24T09:31:07.250Z"
        )
    return value


class _Stamped(BaseModel):
    at: UtcTimestamp


class _Reference(BaseModel):
    at: Annotated[datetime, BeforeValidator(_utc_text_as_a_python_validator)]


def _outcome(model: type[BaseModel], value: Any) -> Any:
    try:
        return model.model_validate({"at": value}).model_dump()
    except ValidationError as error:
        first = error.errors(include_url=False)[0]
        return describe(error), first["type"], str((first.get("ctx") or {}).get("error"))


_timestamps = st.datetimes(timezones=st.just(UTC)).map(
    lambda moment: moment.isoformat(timespec="milliseconds")
)
_inputs = (
    st.text()
    | _timestamps
    | _timestamps.map(lambda text: text.replace("+00:00", "Z"))
    | _timestamps.map(lambda text: text.replace("+00:00", "Z\n"))
    | st.integers()
    | st.floats()
    | st.none()
    | st.booleans()
    | st.sampled_from(["TZ", "ZT", "T\nZ", "2026-11-24T09:31:07Z", "2026-11-24 09:31:07Z"])
)


@given(_inputs)
def test_timestamps_are_judged_as_the_python_rule_judges_them(value: Any) -> None:
    """Same value, or the same located reason, type and context, for any input."""
    assert _outcome(_Stamped, value) == _outcome(_Reference, value)


@pytest.mark.parametrize(
    ("value", "detail"),
    [
        (1_700_000_000, "at: Value error, timestamp must be an RFC 3339 string"),
        ("2026-11-24T09:31:07+00:00", "at: Value error, timestamp must be RFC 3339 UTC "
         "ending in 'Z', e.g. 2026-11-24T09:31:07.250Z"),
    ],
)  # fmt: skip
def test_refusals_keep_their_wording(value: Any, detail: str) -> None:
    with pytest.raises(ValidationError) as refused:
        _Stamped.model_validate({"at": value})
    assert describe(refused.value) == detail


def test_json_schema_and_serialization_are_those_of_a_datetime() -> None:
    """API documentation and responses do not see how the rule is implemented."""
    schema = _Stamped.model_json_schema()["properties"]["at"]
    assert schema == {"format": "date-time", "title": "At", "type": "string"}
    stamped = _Stamped.model_validate({"at": "2026-11-24T09:31:07.250Z"})
    assert stamped.at == datetime(2026, 11, 24, 9, 31, 7, 250_000, tzinfo=UTC)
    reference = _Reference.model_validate({"at": "2026-11-24T09:31:07.250Z"})
    assert stamped.model_dump_json() == reference.model_dump_json()
    assert stamped.model_dump(mode="json") == reference.model_dump(mode="json")
