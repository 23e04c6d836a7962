"""The handpiece's end of tracked commands (protocol v1.2): judging a message from
its ``cmd`` topic.

A message without a ``command_id`` is the gateway's untracked ``resend`` (DESIGN §4),
served as always.  A tracked command is run once: one the device already answered
(delivered again by its persistent session, or published again when it came back)
is ignored.  It is rejected, with an event saying why, when it has expired by the
device's clock, names a command this agent does not know, or does not validate;
otherwise it runs and is acknowledged.  A message too broken to name its command id
cannot be answered, and is only logged.
"""

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from pydantic import BaseModel, ValidationError

from edge_agent.device import DeviceReading
from schemas import ResendCommand, describe
from schemas.command_events import CommandRejection
from schemas.device_config import CommandMessage, CommandName, check_command_args
from schemas.fields import utc_text


@dataclass(frozen=True, slots=True)
class Untracked:
    resend: ResendCommand


@dataclass(frozen=True, slots=True)
class Ignored:
    why: str


@dataclass(frozen=True, slots=True)
class Rejected:
    command_id: str
    reading: DeviceReading


@dataclass(frozen=True, slots=True)
class Runnable:
    message: CommandMessage
    args: BaseModel


CommandVerdict = Untracked | Ignored | Rejected | Runnable


def judge_command(
    payload: bytes, now: datetime, answered: frozenset[str], expiry_now: datetime | None = None
) -> CommandVerdict:
    """What to do with a message from the ``cmd`` topic; ``answered``: the command
    ids this device answered already; ``expiry_now`` the time expiry is judged by
    (``now``, which stamps a rejection, by default)."""
    try:
        document: Any = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return Ignored("not JSON")
    if not isinstance(document, dict):
        return Ignored("not a JSON object")
    if "command_id" not in document:
        try:
            return Untracked(ResendCommand.model_validate(document))
        except ValidationError as error:
            return Ignored(f"not a resend command: {describe(error)}")
    try:
        command_id = str(uuid.UUID(str(document["command_id"])))
    except ValueError:
        return Ignored("command_id is not a UUID: the command cannot be answered")
    if command_id in answered:
        return Ignored(f"command {command_id} was answered already")
    return _judge_tracked(document, command_id, now, expiry_now or now)


def _judge_tracked(
    document: dict[str, Any], command_id: str, now: datetime, expiry_now: datetime
) -> CommandVerdict:
    cmd = str(document.get("cmd", ""))[:64] or "?"
    if cmd not in CommandName.__members__.values():
        return _reject(command_id, cmd, CommandRejection.UNKNOWN,
                       f"this agent does not know {cmd!r}", now)  # fmt: skip
    try:
        message = CommandMessage.model_validate(document)
        args = check_command_args(message.cmd, message.args)
    except ValidationError as error:
        return _reject(command_id, cmd, CommandRejection.INVALID, describe(error), now)
    if message.expires_at <= expiry_now:
        detail = f"expired at {utc_text(message.expires_at)}, received {utc_text(expiry_now)}"
        return _reject(command_id, cmd, CommandRejection.EXPIRED, detail, now)
    return Runnable(message, args)


def acknowledged(
    message: CommandMessage, now: datetime, result: dict[str, Any] | None = None
) -> DeviceReading:
    data: dict[str, Any] = {"command_id": str(message.command_id), "cmd": message.cmd.value}
    if result:
        data["result"] = result
    return DeviceReading("command.acknowledged", now, data)


def rejected(
    message: CommandMessage, reason: CommandRejection, detail: str, now: datetime
) -> DeviceReading:
    return _reject(str(message.command_id), message.cmd.value, reason, detail, now).reading


def _reject(
    command_id: str, cmd: str, reason: CommandRejection, detail: str, now: datetime
) -> Rejected:
    data = {"command_id": command_id, "cmd": cmd, "reason": reason.value, "detail": detail[:2000]}
    return Rejected(command_id, DeviceReading("command.rejected", now, data))


def note_answered(connection: Any, device_id: str, command_id: str, now: datetime) -> None:
    """Keep ``command_id`` as answered, in the transaction that records the answer."""
    connection.execute(
        "INSERT OR IGNORE INTO answered_commands (device_id, command_id, answered_at) "
        "VALUES (?, ?, ?)",
        (device_id, command_id, utc_text(now)),
    )


def load_answered(connection: Any, device_id: str) -> frozenset[str]:
    rows = connection.execute(
        "SELECT command_id FROM answered_commands WHERE device_id = ?", (device_id,)
    ).fetchall()
    return frozenset(row[0] for row in rows)
