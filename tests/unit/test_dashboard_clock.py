"""Times as the dashboard shows them: the zone chosen, named, the UTC instant and the
receive time kept in the title; durations in words; the clinic policy's zone checked;
the usage chart's axes."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from services.alerts.policy import AlertPolicy, PolicyError
from services.alerts.policy_bounds import DEFAULT_BOUNDS, POLICY_KEYS, check_overrides
from services.api.dashboard.charts import usage_bars
from services.api.dashboard.clock import ago, chosen_zone, duration, local_time
from services.api.models import UsageDay

WINTER = datetime(2026, 11, 30, 13, 5, 9, tzinfo=UTC)
SUMMER = datetime(2026, 7, 1, 13, 5, tzinfo=UTC)


def test_time_shows_in_the_zone_with_its_name_and_the_utc_instant() -> None:
    berlin = ZoneInfo("Europe/Berlin")

    shown = str(local_time(WINTER, berlin))

    assert ">2026-11-30 14:05 CET</time>" in shown
    assert 'title="2026-11-30 13:05:09 UTC"' in shown
    assert 'datetime="2026-11-30T13:05:09+00:00"' in shown
    assert ">2026-07-01 15:05 CEST<" in str(local_time(SUMMER, berlin))


def test_a_naive_stored_time_is_utc() -> None:
    shown = str(local_time(WINTER.replace(tzinfo=None), ZoneInfo("America/New_York")))

    assert ">2026-11-30 08:05 EST<" in shown


def test_receive_time_is_given_where_it_differs_from_the_device_time() -> None:
    zone = ZoneInfo("Asia/Tokyo")

    late = str(local_time(WINTER, zone, received=WINTER + timedelta(minutes=3, seconds=2)))
    same = str(local_time(WINTER, zone, received=WINTER))

    assert "device time 2026-11-30 13:05:09 UTC; received 2026-11-30 22:08:11 JST" in late
    assert "(3 min later)" in late
    assert "received" not in same
    assert str(local_time(None, zone)) == "—"


@pytest.mark.parametrize(
    ("span", "words"),
    [
        (timedelta(seconds=42), "42 s"),
        (timedelta(minutes=3, seconds=59), "3 min"),
        (timedelta(hours=2, minutes=10), "2 h 10 min"),
        (timedelta(hours=5), "5 h"),
        (timedelta(days=3, hours=4, minutes=30), "3 d 4 h"),
        (None, "—"),
    ],
)
def test_durations_read_as_words(span: timedelta | None, words: str) -> None:
    assert duration(span) == words


def test_ago_counts_back_from_now() -> None:
    assert ago(WINTER - timedelta(minutes=3), now=WINTER) == "3 min ago"
    assert ago(WINTER - timedelta(seconds=10), now=WINTER) == "just now"
    assert ago(WINTER + timedelta(hours=1), now=WINTER) == "in 1 h"
    assert ago(None) == "never"


def test_the_viewers_choice_wins_then_the_clinics_then_utc() -> None:
    assert chosen_zone("Asia/Tokyo", "Europe/Berlin").key == "Asia/Tokyo"
    assert chosen_zone(None, "Europe/Berlin").key == "Europe/Berlin"
    assert chosen_zone("Not/AZone", "Europe/Berlin").key == "Europe/Berlin"
    assert chosen_zone("../../etc/passwd", None).key == "UTC"


def test_the_clinic_policy_takes_an_iana_zone_only() -> None:
    assert AlertPolicy().time_zone == "UTC"
    assert check_overrides({"time_zone": "Europe/Berlin"}, DEFAULT_BOUNDS).time_zone == (
        "Europe/Berlin"
    )
    for bad in ("Mars/Olympus_Mons", "/etc/localtime", "Europe/../UTC", " UTC"):
        with pytest.raises(PolicyError, match="time_zone"):
            AlertPolicy.with_overrides({"time_zone": bad})
    assert "time_zone" not in POLICY_KEYS  # no numeric bound can hold a name


def test_usage_chart_has_axes_units_and_round_ticks() -> None:
    days = [UsageDay(day=f"2026-11-{n:02d}", sessions=1, cores=n * 37) for n in range(1, 31)]

    chart = usage_bars(days)

    assert ">cores/day</text>" in chart
    assert chart.count('class="axis-line"') == 2
    assert [tick for tick in (">0<", ">500<", ">1,000<", ">1,110<") if tick in chart] == [
        ">0<",
        ">500<",
        ">1,000<",
    ]
    assert ">11-01</text>" in chart
    assert "cores</text>" not in chart  # the scale is the axis, not a lone peak label


def test_an_idle_month_draws_no_made_up_scale() -> None:
    days = [UsageDay(day=f"2026-11-{n:02d}", sessions=0, cores=0) for n in range(1, 31)]

    chart = usage_bars(days)

    assert "cores</text>" not in chart
    assert chart.count('class="axis end"') == 1  # the zero tick alone
