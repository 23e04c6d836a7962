"""What the platform asks of one handpiece, carried out: its desired configuration
(``desired_config``) and its tracked commands (``commands``), with every answer
recorded as an event in its own chain.

The link hands over what arrives on the device's ``config`` and ``cmd`` topics
(``DeviceLink.control``), on the driver's thread, between its other work; this
module decides, records the answer in the outbox together with the state it
reports (in one transaction), and hands the settings on: interlock settings to the
handpiece's ``Interlocks``, the heartbeat interval to ``heartbeat_due``, the flush
interval to the link.  Interlock commands (``lock``, ``unlock``,
``override_interlock``) are the interlocks' to carry out; ``reboot`` restarts the
agent's connection and records ``agent.started`` again; ``resync`` announces the
device's head again and republishes what the platform has not acknowledged;
``collect_diagnostics`` answers with a small summary; a tracked ``resend`` is served
like the gateway's and acknowledged.
"""

import logging
import sqlite3
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Final, Protocol

from edge_agent.commands import (
    Ignored,
    Rejected,
    Runnable,
    Untracked,
    acknowledged,
    judge_command,
    load_answered,
    note_answered,
    rejected,
)
from edge_agent.desired_config import ConfigMemory, judge_config, load_memory, save_memory
from edge_agent.device import DeviceReading
from edge_agent.interlocks import InterlockCommandError, Interlocks
from edge_agent.outbox import Outbox
from schemas import Heartbeat, ResendCommand
from schemas.command_events import CommandRejection
from schemas.device_config import CommandMessage, CommandName, DeviceSettings, ResendArgs

log = logging.getLogger(__name__)

_INTERLOCK_COMMANDS: Final = frozenset(
    {CommandName.LOCK, CommandName.UNLOCK, CommandName.OVERRIDE_INTERLOCK}
)


class LinkActions(Protocol):
    """What a command may ask of the device's link (``DeviceLink``)."""

    def serve_resend(self, command: ResendCommand) -> int:
        """Publish the stored events of the range again; how many there were."""
        ...

    def resync(self) -> None: ...

    def restart(self) -> None: ...

    def notify_recorded(self) -> None: ...

    def apply_settings(self, settings: DeviceSettings) -> None: ...


def _wall_clock() -> datetime:
    return datetime.now(UTC)


def load_settings(outbox: Outbox, device_id: str) -> DeviceSettings:
    """The settings the device enforces (kept in its outbox): what its ``Interlocks``
    start from after a restart."""
    return outbox.read_state(lambda connection: load_memory(connection, device_id)).settings


class DeviceControl:
    """The configuration and commands of one device."""

    def __init__(
        self,
        device_id: str,
        outbox: Outbox,
        *,
        interlocks: Interlocks | None = None,
        clock: Callable[[], datetime] = _wall_clock,
        expiry_clock: Callable[[], datetime] | None = None,
        agent_version: str = "1.0.0",
    ) -> None:
        """``clock`` stamps the events recorded; ``expiry_clock`` (``clock`` by
        default) judges a command's expiry: a simulated handpiece lives in simulated
        time, but its commands expire in the platform's."""
        self.device_id = device_id
        self.outbox = outbox
        self.interlocks = interlocks
        self.clock = clock
        self.expiry_clock = expiry_clock or clock
        self.agent_version = agent_version
        self.memory: ConfigMemory = outbox.read_state(
            lambda connection: load_memory(connection, device_id)
        )
        self.answered: frozenset[str] = outbox.read_state(
            lambda connection: load_answered(connection, device_id)
        )
        self.started: Mapping[str, Any] | None = None
        """The last ``agent.started`` the firmware reported: a reboot repeats it."""
        self._last_heartbeat: datetime | None = None
        self._began = time.monotonic()

    @property
    def settings(self) -> DeviceSettings:
        return self.memory.settings

    @property
    def config_version(self) -> int:
        applied = self.memory.applied
        return 0 if applied is None else applied.version

    def saw(self, reading: DeviceReading) -> None:
        """Every reading the firmware records passes here (for ``reboot``)."""
        if reading.type == "agent.started":
            self.started = reading.data

    def heartbeat_due(self, sample: Heartbeat) -> bool:
        """Whether to send ``sample``: at most one per ``heartbeat_interval_s`` (of
        the samples' own times), however often the firmware samples."""
        last = self._last_heartbeat
        interval = self.settings.heartbeat_interval_s
        if last is not None and 0 <= (sample.sampled_at - last).total_seconds() < interval:
            return False
        self._last_heartbeat = sample.sampled_at
        return True

    # -- configuration ------------------------------------------------------------

    def take_config(self, payload: bytes, link: LinkActions) -> None:
        now = self.clock()
        decision = judge_config(payload, self.device_id, self.memory, now)
        if decision.reading is None:
            self.memory = decision.memory
            return
        readings = [decision.reading]
        applied = decision.applied
        if applied is not None and self.interlocks is not None:
            readings += self.interlocks.configure(applied.settings, now)
        memory = decision.memory

        def keep(connection: sqlite3.Connection) -> None:
            save_memory(connection, self.device_id, memory)

        self.outbox.record_noting(self.device_id, readings, keep)
        self.memory = memory
        link.notify_recorded()
        if applied is not None:
            link.apply_settings(applied.settings)
            log.info("%s: applied configuration version %d", self.device_id, applied.version)
        else:
            log.warning("%s: refused a configuration: %s",
                        self.device_id, decision.reading.data["reason"])  # fmt: skip

    # -- commands -------------------------------------------------------------------

    def take_command(self, payload: bytes, link: LinkActions) -> None:
        now = self.clock()
        verdict = judge_command(payload, now, self.answered, self.expiry_clock())
        if isinstance(verdict, Untracked):
            link.serve_resend(verdict.resend)
        elif isinstance(verdict, Ignored):
            log.info("%s: ignoring a command: %s", self.device_id, verdict.why)
        elif isinstance(verdict, Rejected):
            self._answer(verdict.command_id, [verdict.reading], link)
            log.warning("%s: rejected a command: %s", self.device_id, verdict.reading.data)
        else:
            self._run(verdict, now, link)

    def _run(self, verdict: Runnable, now: datetime, link: LinkActions) -> None:
        message = verdict.message
        command_id = str(message.command_id)
        cmd = message.cmd
        if cmd in _INTERLOCK_COMMANDS:
            self._answer(command_id, self._interlock_command(message, now), link)
        elif cmd is CommandName.REBOOT:
            self._answer(command_id, [acknowledged(message, now)], link)
            self._reboot(link)
        elif cmd is CommandName.RESYNC:
            self._answer(command_id, [acknowledged(message, now)], link)
            link.resync()
        elif cmd is CommandName.COLLECT_DIAGNOSTICS:
            self._answer(command_id, [acknowledged(message, now, self.diagnostics())], link)
        elif isinstance(verdict.args, ResendArgs):  # a tracked resend
            resend = ResendCommand(
                cmd="resend", from_seq=verdict.args.from_seq, to_seq=verdict.args.to_seq
            )
            served = link.serve_resend(resend)
            self._answer(command_id, [acknowledged(message, now, {"events": served})], link)

    def _interlock_command(self, message: CommandMessage, now: datetime) -> list[DeviceReading]:
        if self.interlocks is None:
            detail = "this handpiece enforces no interlocks"
            return [rejected(message, CommandRejection.NOT_APPLICABLE, detail, now)]
        try:
            events = self.interlocks.apply_command(message.cmd.value, message.args, now)
        except InterlockCommandError as error:
            return [rejected(message, error.rejection, str(error), now)]
        return [acknowledged(message, now), *events]

    def _answer(self, command_id: str, readings: list[DeviceReading], link: LinkActions) -> None:
        now = self.clock()

        def keep(connection: sqlite3.Connection) -> None:
            note_answered(connection, self.device_id, command_id, now)

        self.outbox.record_noting(self.device_id, readings, keep)
        self.answered = self.answered | {command_id}
        link.notify_recorded()

    def _reboot(self, link: LinkActions) -> None:
        started = dict(self.started or {"firmware_version": "unknown"})
        started |= {"agent_version": self.agent_version, "boot_id": str(uuid.uuid4())}
        self.outbox.record(self.device_id, DeviceReading("agent.started", self.clock(), started))
        self._began = time.monotonic()
        link.restart()

    def diagnostics(self) -> dict[str, str | int | float | bool | None]:
        """A small, honest summary: what the agent itself knows."""
        state = self.outbox.delivery_state(self.device_id)
        blocking = () if self.interlocks is None else self.interlocks.blocking()
        return {
            "head_seq": state.head_seq,
            "acked_seq": state.acked_seq,
            "unacknowledged": state.unacknowledged,
            "config_version": self.config_version,
            "agent_uptime_s": round(time.monotonic() - self._began),
            "blocking": ",".join(cause.value for cause in blocking) or None,
        }
