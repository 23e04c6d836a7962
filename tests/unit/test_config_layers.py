"""Desired configuration on the platform's side: merging the layers within the
clinic bounds, and the book that versions each device's merged settings and tracks
commands, folded from events alone."""

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from schemas.config_events import (
    DEFAULT_CLINIC_BOUNDS,
    ClinicBounds,
    LayerSettings,
    NumericBound,
)
from schemas.device_config import DEFAULT_SETTINGS, InterlockMode, settings_digest
from services.config_delivery import (
    CommandState,
    ConfigBook,
    ConfigState,
    DeviceLayers,
    clinic_layer_problems,
    merge,
)
from services.config_delivery.book import Folded

AT = "2026-12-08T10:00:00.000Z"
LATER = "2026-12-08T10:05:00.000Z"
COMMAND = "0b6c2a4e-6d1f-4c3e-9a7e-2f1f0c9d8e11"


def layer(**fields: Any) -> LayerSettings:
    return LayerSettings.model_validate(fields)


def changed(layer_name: str, subject: str | None, **fields: Any) -> Folded:
    data = {"layer": layer_name, "subject": subject, "settings": fields, "previous": {},
            "by": "someone"}  # fmt: skip
    return Folded("config:x", "PLATFORM", "device_config.changed", AT, data)


def registry(device_id: str, kind: str, **data: Any) -> Folded:
    return Folded(f"registry:{device_id}", device_id, kind, AT, data)


def device_event(device_id: str, kind: str, **data: Any) -> Folded:
    return Folded(device_id, device_id, kind, LATER, data)


def test_later_layers_win_and_recalled_lots_add_up() -> None:
    """Fleet < model < clinic < device for ordinary fields; recalled lots are the
    union of every layer, so no later layer can take a fleet recall back."""
    merged = merge(
        DeviceLayers(
            fleet=layer(heartbeat_interval_s=60, recalled_lots=["LOT-A"]),
            model=layer(heartbeat_interval_s=45, cartridge_life_mode="block"),
            clinic=layer(heartbeat_interval_s=20, recalled_lots=["LOT-B"]),
            device=layer(heartbeat_interval_s=15),
        )
    )
    assert merged.heartbeat_interval_s == 15
    assert merged.cartridge_life_mode is InterlockMode.BLOCK
    assert merged.recalled_lots == ("LOT-A", "LOT-B")


def test_clinic_layer_is_held_to_the_bounds_at_every_merge() -> None:
    """Bounds narrowed after a clinic chose: its number is clamped, a mode no longer
    allowed is ignored (the fleet's stands), a platform-only field never passes."""
    bounds = ClinicBounds(
        numeric={"heartbeat_interval_s": NumericBound(min=30, max=120)},
        modes={"cartridge_life_mode": (InterlockMode.BLOCK,)},
    )
    clinic = layer(heartbeat_interval_s=10, cartridge_life_mode="warn",
                   service_due_at_actuations=5)  # fmt: skip
    fleet = layer(cartridge_life_mode="block")
    merged = merge(DeviceLayers(fleet=fleet, clinic=clinic), bounds)
    assert merged.heartbeat_interval_s == 30
    assert merged.cartridge_life_mode is InterlockMode.BLOCK
    assert merged.service_due_at_actuations is None


def test_clinic_layer_problems_name_field_value_and_bound() -> None:
    """What a clinic may not set is refused field by field, saying why."""
    problems = clinic_layer_problems(
        layer(heartbeat_interval_s=5, service_interval_actuations=1000, recalled_lots=["X1"]),
        DEFAULT_CLINIC_BOUNDS,
    )
    assert problems == [
        "heartbeat_interval_s 5 is outside 10..3600",
        "service_interval_actuations is set by the manufacturer, not by a clinic",
    ]
    only_block = ClinicBounds(modes={"cartridge_life_mode": (InterlockMode.BLOCK,)})
    assert clinic_layer_problems(layer(cartridge_life_mode="warn"), only_block) == [
        "cartridge_life_mode 'warn' is not allowed: the bounds allow block"
    ]


def test_service_interval_gives_the_service_due_count() -> None:
    """An interval puts service due at the last service's count plus the interval; a
    count set outright wins."""
    fleet = layer(service_interval_actuations=250_000)
    assert (
        merge(DeviceLayers(fleet=fleet), last_service_actuations=1000).service_due_at_actuations
        == 251_000
    )
    explicit = layer(service_due_at_actuations=7)
    assert merge(DeviceLayers(fleet=fleet, device=explicit)).service_due_at_actuations == 7


@given(st.lists(st.integers(min_value=10, max_value=3600), min_size=1, max_size=12))
def test_versions_grow_by_one_per_change_of_the_merged_settings(values: list[int]) -> None:
    """However layers change, a device's version counts the distinct consecutive
    merged results, no more (a change that merges the same publishes nothing)."""
    book = ConfigBook()
    book.fold([registry("HP-000001", "device.registered", model="CL-200")])
    for value in values:
        book.fold([changed("fleet", None, heartbeat_interval_s=value)])
    distinct = 1 + sum(
        1 for before, after in zip([30, *values], values, strict=False) if before != after
    )
    device = book.devices["HP-000001"]
    assert device.desired_version == distinct
    assert device.desired_digest == settings_digest(
        DEFAULT_SETTINGS.model_copy(update={"heartbeat_interval_s": values[-1]})
    )


def test_model_and_clinic_layers_reach_the_devices_they_name() -> None:
    """A model's layer changes its devices only; an assignment brings the clinic's
    layer with it, as a new version."""
    book = ConfigBook()
    book.fold([
        registry("HP-000001", "device.registered", model="CL-200"),
        registry("HP-000002", "device.registered", model="CL-300"),
        changed("model", "CL-200", heartbeat_interval_s=90),
        changed("clinic", "clinic-7", cartridge_life_mode="block"),
    ])  # fmt: skip
    first, second = book.devices["HP-000001"], book.devices["HP-000002"]
    assert (first.desired_version, second.desired_version) == (2, 1)
    changes = book.fold([registry("HP-000002", "device.assigned", clinic_id="clinic-7")])
    assert changes.republish == {"HP-000002"}
    assert second.desired_settings is not None
    assert second.desired_settings.cartridge_life_mode is InterlockMode.BLOCK


def test_reported_state_follows_the_devices_answers() -> None:
    """Pending until the device answers; applied when it applies the desired version;
    refused when it refuses it; pending again when a newer version is decided."""
    book = ConfigBook()
    book.fold([registry("HP-000001", "device.registered", model="CL-200")])
    device = book.devices["HP-000001"]

    def state() -> ConfigState | None:
        return device.state

    assert state() is ConfigState.PENDING
    book.fold([device_event("HP-000001", "config.applied", version=1,
                            digest=device.desired_digest)])  # fmt: skip
    assert state() is ConfigState.APPLIED
    book.fold([changed("device", "HP-000001", needle_life_warning_pct=99)])
    book.fold([device_event("HP-000001", "config.refused", version=2, reason="incoherent")])
    assert (state(), device.refused_reason) == (ConfigState.REFUSED, "incoherent")
    book.fold([changed("device", "HP-000001")])
    assert state() is ConfigState.PENDING


def test_a_command_is_pending_until_answered_and_a_late_answer_wins_over_expiry() -> None:
    """Issued → pending; the platform's expiry → expired; the device's answer
    arriving after that still says what the handpiece did."""
    book = ConfigBook()
    issued = Folded("commands:HP-000001", "HP-000001", "command.issued", AT,
                    {"command_id": COMMAND, "cmd": "lock", "args": {},
                     "expires_at": LATER, "issued_by": "ops"})  # fmt: skip
    changes = book.fold([issued])
    assert [command.command_id for command in changes.issued] == [COMMAND]
    book.fold([Folded("commands:HP-000001", "HP-000001", "command.expired", LATER,
                      {"command_id": COMMAND})])  # fmt: skip
    assert book.open_commands[COMMAND].state is CommandState.EXPIRED
    answer = book.fold([device_event("HP-000001", "command.rejected", command_id=COMMAND,
                                     cmd="lock", reason="expired", detail="late")])  # fmt: skip
    rejected = answer.commands[COMMAND]
    assert (rejected.state, rejected.reason) == (CommandState.REJECTED, "expired")
    assert COMMAND not in book.open_commands


def test_an_answer_from_another_device_changes_nothing() -> None:
    """A device cannot answer a command issued to another."""
    book = ConfigBook()
    book.fold([Folded("commands:HP-000001", "HP-000001", "command.issued", AT,
                      {"command_id": COMMAND, "cmd": "lock", "args": {},
                       "expires_at": LATER, "issued_by": "ops"})])  # fmt: skip
    changes = book.fold([device_event("HP-000002", "command.acknowledged",
                                      command_id=COMMAND, cmd="lock")])  # fmt: skip
    assert changes.commands == {}
    assert book.open_commands[COMMAND].state is CommandState.PENDING


def test_a_null_leaves_a_field_unset_except_the_service_limit() -> None:
    """``null`` for a setting that needs a value is no setting (the layers below
    decide); for ``service_due_at_actuations`` it is "no limit", over a lower layer's."""
    nulls = layer(cartridge_life_mode=None, heartbeat_interval_s=None,
                  service_due_at_actuations=None)  # fmt: skip
    assert nulls.named() == {"service_due_at_actuations": None}
    merged = merge(DeviceLayers(fleet=layer(service_due_at_actuations=9, heartbeat_interval_s=45),
                                device=nulls))  # fmt: skip
    assert (merged.heartbeat_interval_s, merged.service_due_at_actuations) == (45, None)
