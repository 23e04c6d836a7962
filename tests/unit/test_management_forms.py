"""Reading the policy, bounds and people forms: every field checked on its own so each
refusal lands at its field, bounds stored only where they differ from the platform's,
and the account and token functions' messages put in the form's words."""

from schemas.config_events import DEFAULT_CLINIC_BOUNDS, LayerSettings
from schemas.device_config import InterlockMode
from services.alerts.policy_bounds import DEFAULT_BOUNDS, Bound
from services.api.dashboard.management_bounds import _device_bounds_from, _policy_bounds_from
from services.api.dashboard.management_people import _at_field
from services.api.dashboard.management_policies import _layer_from, _overrides_from


def test_each_threshold_is_refused_at_its_own_field() -> None:
    """A value out of bounds, text that is no number and a fraction where a whole
    number is needed are each refused at their key; the rest are taken."""
    overrides, errors = _overrides_from(
        {"coverage_max_pct": "30", "needle_life_low_pct": "many", "service_interval": "1.5",
         "offline_after_s": "600", "gap_grace_s": ""},
        DEFAULT_BOUNDS,
    )  # fmt: skip
    assert overrides == {"offline_after_s": 600.0}
    assert errors == {
        "coverage_max_pct": "coverage_max_pct: 30 is outside the manufacturer's bounds 1..20",
        "needle_life_low_pct": "needle_life_low_pct: a number, not 'many'.",
        "service_interval": "service_interval: a whole number, not '1.5'.",
    }


def test_an_unknown_time_zone_is_refused_and_a_known_one_taken() -> None:
    """The time zone is a name, not a number: an IANA zone is taken as typed."""
    assert _overrides_from({"time_zone": "Asia/Tokyo"}, DEFAULT_BOUNDS) == (
        {"time_zone": "Asia/Tokyo"}, {}
    )  # fmt: skip
    _, errors = _overrides_from({"time_zone": "Atlantis/Capital"}, DEFAULT_BOUNDS)
    assert "'Atlantis/Capital' is not an IANA time zone" in errors["time_zone"]


def test_policy_bounds_are_kept_only_where_they_differ_from_the_defaults() -> None:
    """The form shows every bound in force; only those changed are the manufacturer's."""
    form = {f"{key}.{end}": "" if value is None else str(value)
            for key, bound in DEFAULT_BOUNDS.items()
            for end, value in (("min", bound.low), ("max", bound.high))}  # fmt: skip
    assert _policy_bounds_from(form) == ({}, {})
    form["coverage_max_pct.max"] = "12"
    form["offline_after_s.min"] = "400"
    wanted, errors = _policy_bounds_from(form)
    assert wanted == {"coverage_max_pct": Bound(1, 12)}
    assert errors == {"offline_after_s": "offline_after_s: the bounds 400..3600 leave out "
                      "the default 300"}  # fmt: skip


def test_device_bounds_read_ranges_and_ticked_modes() -> None:
    """Both ends of a range, or neither; the ticked modes; crossed ends refused."""
    wanted, errors = _device_bounds_from(
        {"heartbeat_interval_s.min": "30", "heartbeat_interval_s.max": "900",
         "cartridge_life_mode.block": "yes"}
    )  # fmt: skip
    assert errors == {}
    assert wanted is not None
    assert wanted.numeric["heartbeat_interval_s"].max == 900
    assert list(wanted.numeric) == ["heartbeat_interval_s"]
    assert wanted.modes == {"cartridge_life_mode": (InterlockMode.BLOCK,)}
    _, errors = _device_bounds_from(
        {"event_flush_interval_s.min": "9", "needle_life_warning_pct.min": "90",
         "needle_life_warning_pct.max": "80"}
    )  # fmt: skip
    assert errors["event_flush_interval_s"].startswith("event_flush_interval_s: give both ends")
    assert "min 90 is above max 80" in errors["needle_life_warning_pct"]


def test_a_clinic_layer_keeps_its_recalled_lots_and_names_each_field_out_of_bounds() -> None:
    """What the form does not show (recalled lots) is kept; each field outside the
    bounds is refused at its own name."""
    kept = LayerSettings.model_validate({"recalled_lots": ["L2607B"], "heartbeat_interval_s": 60})
    settings, errors = _layer_from({"cartridge_life_mode": "block"}, kept, DEFAULT_CLINIC_BOUNDS)
    assert errors == {}
    assert settings is not None
    assert settings.named() == {"cartridge_life_mode": "block", "recalled_lots": ["L2607B"]}
    _, errors = _layer_from(
        {"heartbeat_interval_s": "5", "needle_life_critical_pct": "lots"}, kept,
        DEFAULT_CLINIC_BOUNDS,
    )  # fmt: skip
    assert errors == {"needle_life_critical_pct": "needle_life_critical_pct: a whole number, "
                      "not 'lots'."}  # fmt: skip
    _, errors = _layer_from({"heartbeat_interval_s": "5"}, kept, DEFAULT_CLINIC_BOUNDS)
    assert errors == {"heartbeat_interval_s": "heartbeat_interval_s 5 is outside 10..3600"}


def test_messages_of_the_command_line_are_put_in_the_forms_words() -> None:
    """Options become field labels, the hint to a CLI listing goes, and the field the
    message is about is named."""
    assert _at_field("--expires-in '3x': a number and h, d or w, e.g. 90d", "") == (
        "expires_in", "Expires in '3x': a number and h, d or w, e.g. 90d"
    )  # fmt: skip
    assert _at_field("a clinic user needs --clinic (the clinic it belongs to)", "") == (
        "clinic_id", "A clinic user needs Clinic (the clinic it belongs to)"
    )  # fmt: skip
    assert _at_field("there is already an account for a@b.example", "") == (
        "email", "There is already an account for a@b.example"
    )  # fmt: skip
