"""The handpiece's end of configuration and commands: what it applies, refuses,
runs and rejects, each answer recorded in its own chain with the state it reports,
and kept across a restart (a real outbox file; the link is a recording stand-in)."""

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from edge_agent.commands import Ignored, Rejected, Untracked, judge_command
from edge_agent.control import DeviceControl
from edge_agent.desired_config import ConfigMemory, judge_config
from edge_agent.interlocks import Interlocks
from edge_agent.outbox import Outbox
from schemas import ResendCommand
from schemas.device_config import DEFAULT_SETTINGS, DeviceSettings, settings_digest

DEVICE = "HP-000077"
NOW = datetime(2026, 12, 8, 10, 0, tzinfo=UTC)


class FakeLink:
    """Records what the control asked of the link."""

    def __init__(self) -> None:
        self.resends: list[ResendCommand] = []
        self.resyncs = 0
        self.restarts = 0
        self.settings: list[DeviceSettings] = []

    def serve_resend(self, command: ResendCommand) -> int:
        self.resends.append(command)
        return command.to_seq - command.from_seq + 1

    def resync(self) -> None:
        self.resyncs += 1

    def restart(self) -> None:
        self.restarts += 1

    def notify_recorded(self) -> None:
        pass

    def apply_settings(self, settings: DeviceSettings) -> None:
        self.settings.append(settings)


def config_message(version: int, settings: DeviceSettings, **changes: Any) -> bytes:
    document = {"device_id": DEVICE, "version": version,
                "settings": settings.model_dump(mode="json"),
                "digest": settings_digest(settings)} | changes  # fmt: skip
    return orjson.dumps(document)


def command(cmd: str, expires_at: datetime, **args: Any) -> bytes:
    return orjson.dumps({"cmd": cmd, "command_id": str(uuid.uuid4()),
                         "expires_at": expires_at.isoformat().replace("+00:00", "Z"),
                         "issued_by": "ops <ops@example>", "args": args})  # fmt: skip


def recorded(outbox: Outbox) -> list[dict[str, Any]]:
    head = outbox.head(DEVICE)[0]
    return [orjson.loads(entry.wire) for entry in outbox.between(DEVICE, 1, head)]


def test_a_newer_valid_configuration_is_applied_and_an_older_one_refused() -> None:
    """Version 2 applies; the same message again records nothing; version 1 after it
    is refused as older, once."""
    settings = DEFAULT_SETTINGS.model_copy(update={"heartbeat_interval_s": 60})
    applied = judge_config(config_message(2, settings), DEVICE, ConfigMemory(), NOW)
    assert applied.reading is not None
    assert applied.reading.type == "config.applied"
    assert applied.memory.settings.heartbeat_interval_s == 60
    again = judge_config(config_message(2, settings), DEVICE, applied.memory, NOW)
    assert again.reading is None
    older = judge_config(config_message(1, DEFAULT_SETTINGS), DEVICE, applied.memory, NOW)
    assert older.reading is not None
    assert older.reading.data == {
        "version": 1,
        "reason": "version 1 is not newer than the applied version 2",
    }
    assert (
        judge_config(config_message(1, DEFAULT_SETTINGS), DEVICE, older.memory, NOW).reading is None
    )


def test_wrong_device_wrong_digest_and_contradictions_are_refused() -> None:
    """Each refusal names its reason; the device keeps its defaults."""
    incoherent = DEFAULT_SETTINGS.model_copy(update={"needle_life_warning_pct": 99})
    cases = {
        config_message(1, DEFAULT_SETTINGS, device_id="HP-000078"): "for HP-000078",
        config_message(1, DEFAULT_SETTINGS, digest="0" * 64): "digest does not match",
        config_message(1, incoherent): "needle_life_warning_pct 99 is above",
        b'{"version": 3, "settings": 5}': "invalid",
    }
    for payload, reason in cases.items():
        decision = judge_config(payload, DEVICE, ConfigMemory(), NOW)
        assert decision.reading is not None
        assert decision.reading.type == "config.refused"
        assert reason in decision.reading.data["reason"]
        assert decision.memory.settings == DEFAULT_SETTINGS


def test_commands_are_judged_before_they_run() -> None:
    """An untracked resend passes through; an unknown, invalid or expired command is
    rejected with its reason; one already answered, or without a usable id, ignored."""
    later = NOW + timedelta(minutes=5)
    resend = judge_command(b'{"cmd": "resend", "from_seq": 2, "to_seq": 4}', NOW, frozenset())
    assert isinstance(resend, Untracked)
    reasons = {
        command("self_destruct", later): "unknown",
        command("resend", later, from_seq=5, to_seq=2): "invalid",
        command("lock", NOW - timedelta(seconds=1)): "expired",
    }
    for payload, reason in reasons.items():
        verdict = judge_command(payload, NOW, frozenset())
        assert isinstance(verdict, Rejected)
        assert verdict.reading.data["reason"] == reason
    payload = command("lock", later)
    command_id = orjson.loads(payload)["command_id"]
    assert isinstance(judge_command(payload, NOW, frozenset({command_id})), Ignored)
    assert isinstance(
        judge_command(b'{"cmd": "lock", "command_id": "x"}', NOW, frozenset()), Ignored
    )


def test_applied_configuration_reaches_the_interlocks_and_survives_a_restart(
    tmp_path: Path,
) -> None:
    """``config.applied`` is recorded with the settings kept beside it; the
    interlocks and the link get them; a new control on the same file starts from them."""
    outbox = Outbox(tmp_path / "outbox.db")
    interlocks = Interlocks()
    control = DeviceControl(DEVICE, outbox, interlocks=interlocks, clock=lambda: NOW)
    link = FakeLink()
    settings = DEFAULT_SETTINGS.model_copy(update={"recalled_lots": ("LOT-9",)})
    control.take_config(config_message(4, settings), link)

    assert [event["type"] for event in recorded(outbox)] == ["config.applied"]
    assert interlocks.settings.recalled_lots == ("LOT-9",)
    assert link.settings == [settings]
    restarted = DeviceControl(DEVICE, Outbox(tmp_path / "outbox.db"))
    assert (restarted.config_version, restarted.settings) == (4, settings)


def test_each_command_is_run_once_and_answered(tmp_path: Path) -> None:
    """lock goes to the interlocks (acknowledged, with their event); a second copy of
    the same command is ignored, also after a restart; resync, reboot, diagnostics and
    a tracked resend do what they say and are acknowledged."""
    outbox = Outbox(tmp_path / "outbox.db")
    control = DeviceControl(DEVICE, outbox, interlocks=Interlocks(), clock=lambda: NOW)
    link = FakeLink()
    later = NOW + timedelta(hours=1)
    lock = command("lock", later)
    control.take_command(lock, link)
    control.take_command(lock, link)
    DeviceControl(DEVICE, outbox, interlocks=Interlocks()).take_command(lock, link)
    for payload in (
        command("resync", later),
        command("collect_diagnostics", later),
        command("resend", later, from_seq=1, to_seq=2),
        command("reboot", later),
    ):
        control.take_command(payload, link)  # fmt: skip

    types = [(event["type"], event["data"].get("cmd")) for event in recorded(outbox)]
    assert types == [
        ("command.acknowledged", "lock"), ("interlock.engaged", None),
        ("command.acknowledged", "resync"), ("command.acknowledged", "collect_diagnostics"),
        ("command.acknowledged", "resend"), ("command.acknowledged", "reboot"),
        ("agent.started", None),
    ]  # fmt: skip
    diagnostics = recorded(outbox)[3]["data"]["result"]
    assert diagnostics["config_version"] == 0
    assert diagnostics["head_seq"] == 3
    assert (link.resyncs, link.restarts, link.resends[0].to_seq) == (1, 1, 2)


def test_an_override_of_nothing_engaged_is_rejected_as_not_applicable(tmp_path: Path) -> None:
    """The interlocks' refusal becomes the command's rejection, with their reason."""
    outbox = Outbox(tmp_path / "outbox.db")
    control = DeviceControl(DEVICE, outbox, interlocks=Interlocks(), clock=lambda: NOW)
    later = NOW + timedelta(hours=1)
    control.take_command(
        command("override_interlock", later, interlock="cartridge_life"), FakeLink()
    )
    (event,) = recorded(outbox)
    assert event["type"] == "command.rejected"
    assert event["data"]["reason"] == "not_applicable"
