"""Which appends wake a reader of some streams (``wait_for_appends``' filter)."""

import pytest

from schemas.streams import alert_stream, clinic_config_stream, device_stream, user_stream
from services.eventstore.ports import stream_family, wakes


def test_a_stream_family_is_its_kind_and_a_devices_stream_has_none() -> None:
    assert stream_family(alert_stream("a1")) == "alert:"
    assert stream_family(clinic_config_stream("c1")) == "config:"
    assert stream_family(user_stream("u1")) == "identity:"
    assert stream_family(device_stream("HP-000001")) == ""


@pytest.mark.parametrize(
    ("stream_id", "prefix", "woken"),
    [
        (device_stream("HP-000001"), "", True),
        (alert_stream("a1"), "", True),
        (device_stream("HP-000001"), "alert:", False),
        (alert_stream("a1"), "alert:", True),
        (alert_stream("a1"), "alert:a", True),  # the family cannot tell which alert
        (clinic_config_stream("c1"), "config:clinic:", True),
        (clinic_config_stream("c1"), "alert:", False),
        (user_stream("u1"), "config:", False),
    ],
)
def test_an_append_wakes_the_readers_it_may_concern(
    stream_id: str, prefix: str, woken: bool
) -> None:
    assert wakes(stream_family(stream_id), prefix) is woken
