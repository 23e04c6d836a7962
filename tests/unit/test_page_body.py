"""A page written from plain items is the bytes its ``Page`` model would send: the
API's hot lists skip a model per item, and a client must not see the difference."""

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from services.api.models import DeviceOut
from services.api.pagination import Page
from services.api.responses import json_body, page_body

_ZONES = st.sampled_from([UTC, timezone(timedelta(0)), timezone(timedelta(hours=-5, minutes=-30))])
_TEXT = st.text(max_size=12)
_DEVICES = st.fixed_dictionaries(
    {
        "device_id": _TEXT,
        "clinic_id": st.none() | _TEXT,
        "model": st.none() | _TEXT,
        "registered": st.booleans(),
        "serial": st.none() | _TEXT,
        "status": st.sampled_from(["ok", "cartridge_low", "fault", "offline", "integrity"]),
        "online": st.none() | st.booleans(),
        "last_seen": st.none() | st.datetimes(timezones=_ZONES),
        "firmware_version": st.none() | _TEXT,
        "cartridge_life_used_pct": st.none() | st.floats(allow_nan=False) | st.just(float("inf")),
        "open_faults": st.integers(min_value=0, max_value=10**6),
    }
).map(lambda drawn: {name: drawn[name] for name in DeviceOut.model_fields})  # in order


def _model_built(items: list[dict[str, Any]], following: str | None) -> bytes:
    page = Page[DeviceOut](items=[DeviceOut(**item) for item in items], next_cursor=following)
    return bytes(json_body(page).body)


@given(st.lists(_DEVICES, max_size=4), st.none() | _TEXT)
def test_a_device_page_is_the_models_bytes(
    items: list[dict[str, Any]], following: str | None
) -> None:
    """Nulls, times in and out of UTC, floats of any size, any text: the same bytes."""
    assert bytes(page_body(items, following).body) == _model_built(items, following)


def test_a_page_of_every_kind_of_value() -> None:
    """The cases a fleet has, spelled out: a UTC time (``Z``), microseconds, a whole
    percent held as a float, the cursor, an empty last page."""
    seen = datetime(2026, 12, 1, 6, 5, 4, 321000, tzinfo=UTC)
    device = {
        "device_id": "HP-000123", "clinic_id": "clinic-a", "model": "HP-3", "registered": True,
        "serial": None, "status": "cartridge_low", "online": False, "last_seen": seen,
        "firmware_version": None, "cartridge_life_used_pct": 50.0, "open_faults": 2,
    }  # fmt: skip
    body = bytes(page_body([device], "WyJIUC0wMDAxMjMiXQ").body)
    assert body == _model_built([device], "WyJIUC0wMDAxMjMiXQ")
    assert b'"last_seen":"2026-12-01T06:05:04.321000Z"' in body
    assert b'"cartridge_life_used_pct":50.0,' in body
    assert bytes(page_body([], None).body) == b'{"items":[],"next_cursor":null}'
