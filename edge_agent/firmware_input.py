"""The line protocol between handpiece firmware and ``coreline agent``: one JSON
object per line on the agent's standard input.

    {"type": "cores.punched", "occurred_at": "2026-11-24T09:31:07.250Z", "data": {…}}
    {"heartbeat": {"sampled_at": "2026-11-24T09:31:00.000Z", "battery_pct": 81.5}}

The agent adds identity, ``seq`` and the hash chain; firmware reports facts only.

The handpiece's safety interlocks (``edge_agent.interlocks``) answer on the agent's
standard output, one JSON object per line, so the firmware holds its actuator when
told to:

    {"refused": {"type": "cores.punched", "interlock": "cartridge_life", "reason": "…"}}
    {"engaged": {"interlock": "cartridge_life", "mode": "block", "cartridge_id": "CT-1", …}}
    {"released": {"interlock": "cartridge_life", "by": "cartridge_removed"}}

A refused line is not recorded (a refused install never makes the cartridge
current); the ``engaged`` and ``released`` lines are the interlock events recorded.
"""

from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson
from pydantic import ValidationError

from edge_agent.device import DeviceReading
from schemas import Heartbeat, describe

if TYPE_CHECKING:
    from edge_agent.interlocks import Verdict


class FirmwareLineError(ValueError):
    """A line the agent cannot take; the message says what is wrong with it."""


def parse_line(line: bytes, device_id: str) -> DeviceReading | Heartbeat:
    try:
        message = orjson.loads(line)
    except orjson.JSONDecodeError as error:
        raise FirmwareLineError(f"not JSON: {error}") from None
    if not isinstance(message, dict):
        raise FirmwareLineError("expected a JSON object")
    if "heartbeat" in message:
        return _heartbeat(message["heartbeat"], device_id)
    unknown = message.keys() - {"type", "occurred_at", "data"}
    if unknown:
        raise FirmwareLineError(f"unexpected members {sorted(unknown)}")
    kind, occurred, data = message.get("type"), message.get("occurred_at"), message.get("data")
    if not isinstance(kind, str) or not isinstance(data, dict):
        raise FirmwareLineError('needs "type" (text) and "data" (an object)')
    return DeviceReading(type=kind, occurred_at=_utc(occurred), data=data)


def interlock_answers(reading: DeviceReading, verdict: "Verdict") -> list[bytes]:
    """The lines that tell the firmware what the interlocks decided on ``reading``
    (none when it was simply recorded)."""
    answers = [
        orjson.dumps({recorded.type.removeprefix("interlock."): recorded.data}) + b"\n"
        for recorded in verdict.readings
        if recorded.type.startswith("interlock.")
    ]
    if not verdict.admitted:
        refused = {"type": reading.type, "interlock": verdict.refused_by, "reason": verdict.reason}
        answers.append(orjson.dumps({"refused": refused}) + b"\n")
    return answers


def _heartbeat(sample: Any, device_id: str) -> Heartbeat:
    if not isinstance(sample, dict):
        raise FirmwareLineError('"heartbeat" must be an object')
    try:
        return Heartbeat.model_validate_json(orjson.dumps({"device_id": device_id, **sample}))
    except ValidationError as error:
        raise FirmwareLineError(f"heartbeat {describe(error)}") from None


def _utc(text: Any) -> datetime:
    if not isinstance(text, str) or not text.endswith("Z"):
        raise FirmwareLineError('"occurred_at" must be RFC 3339 UTC text ending in Z')
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise FirmwareLineError(f'"occurred_at" is not a timestamp: {text!r}') from None
