"""Topic names of wire protocol v1."""

import pytest

from schemas import (
    DeviceChannel,
    clinic_alerts_topic,
    device_topic,
    parse_device_topic,
    shared_subscription,
)


@pytest.mark.parametrize("channel", list(DeviceChannel))
def test_device_topics_round_trip(channel: DeviceChannel) -> None:
    """Every device topic built parses back to its device and channel."""
    parsed = parse_device_topic(device_topic("HP-000123", channel))
    assert parsed is not None
    assert (parsed.device_id, parsed.channel) == ("HP-000123", channel)


@pytest.mark.parametrize(
    "topic",
    [
        "coreline/v1/devices/hp-000123/events",
        "coreline/v1/devices/HP/events",
        "coreline/v1/devices/HP-000123/events/extra",
        "coreline/v2/devices/HP-000123/events",
        "coreline/v1/devices/+/events",
        "coreline/v1/devices/HP-000123/logs",
    ],
)
def test_other_topics_do_not_parse(topic: str) -> None:
    """Wrong case, short ids, extra levels, other versions and wildcards name no device."""
    assert parse_device_topic(topic) is None


def test_clinic_and_shared_topics() -> None:
    """Clinic alert topics and the gateways' shared subscription follow DESIGN §4 and §10."""
    assert clinic_alerts_topic("clinic-7") == "coreline/v1/clinics/clinic-7/alerts"
    assert (
        shared_subscription("coreline/v1/devices/+/events")
        == "$share/coreline-gateway/coreline/v1/devices/+/events"
    )
