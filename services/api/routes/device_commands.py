"""Tracked commands: send one to a device, and follow it from ``pending`` to
``acknowledged``, ``rejected`` or ``expired`` (docs/device-configuration.md)."""

from typing import Annotated

from fastapi import APIRouter, Path, Query, status

from schemas.device_config import CommandName
from schemas.fields import DEVICE_ID_PATTERN
from services.api.access import Action
from services.api.config_changes import issue_command
from services.api.config_models import CommandIn, CommandOut
from services.api.deps import Db, DeviceReader, Store
from services.api.problems import ERROR_RESPONSES, conflict, forbidden, not_found
from services.api.queries.devices import device_visible, is_registered
from services.config_delivery.views import device_config_view, find_command, list_commands

router = APIRouter(prefix="/devices/{device_id}/commands", tags=["devices"],
                   responses=ERROR_RESPONSES)  # fmt: skip
DevicePath = Annotated[str, Path(pattern=DEVICE_ID_PATTERN, examples=["HP-000123"])]
CommandPath = Annotated[str, Path(min_length=36, max_length=36)]
StateFilter = Annotated[str | None, Query(pattern="^(pending|acknowledged|rejected|expired)$")]


@router.post("", status_code=status.HTTP_202_ACCEPTED, summary="Send a command")
def send_command(
    who: DeviceReader, db: Db, store: Store, device_id: DevicePath, command: CommandIn
) -> CommandOut:
    """Record ``command.issued`` (id, expiry, author) and deliver it on the device's
    ``cmd`` topic (QoS 1, with the MQTT 5 message expiry): it waits for a device that
    is offline, until it expires.  The device answers ``command.acknowledged`` or
    ``command.rejected``; a command unanswered at its expiry is ``expired``.  The
    manufacturer sends any command; clinic staff may ``lock`` a device they hold.
    An unknown command or arguments it does not take are a 422 naming what is
    allowed, and record nothing."""
    may_send = who.may(Action.SEND_COMMANDS) or (
        who.may(Action.LOCK_DEVICES) and command.cmd == CommandName.LOCK.value
    )
    if not may_send:
        allowed = "only lock, to its own devices" if who.may(Action.LOCK_DEVICES) else "none"
        raise forbidden(f"a {who.role.value} may send {allowed}")
    if not device_visible(db, who, device_id):
        raise not_found("device")
    if not is_registered(db, device_id):
        raise conflict(f"{device_id} is not registered: register it before sending commands")
    view = device_config_view(db, device_id)
    if view is not None and view.decommissioned:
        raise conflict(f"{device_id} is decommissioned")
    issued = issue_command(
        store, device_id, command.cmd, command.args, command.expires_in_s, who.author
    )
    return CommandOut(
        command_id=issued.command_id, device_id=device_id, cmd=issued.cmd.value,
        args=command.args, state="pending", issued_by=who.author,
        issued_at=issued.recorded_at, expires_at=issued.expires_at,
    )  # fmt: skip


@router.get("", summary="A device's commands")
def get_commands(
    who: DeviceReader,
    db: Db,
    device_id: DevicePath,
    state: StateFilter = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[CommandOut]:
    """Newest first, with their state, times and author."""
    if not device_visible(db, who, device_id):
        raise not_found("device")
    return [CommandOut.of(found) for found in list_commands(db, device_id, state=state,
                                                             limit=limit)]  # fmt: skip


@router.get("/{command_id}", summary="A command")
def get_command(
    who: DeviceReader, db: Db, device_id: DevicePath, command_id: CommandPath
) -> CommandOut:
    if not device_visible(db, who, device_id):
        raise not_found("device")
    found = find_command(db, device_id, command_id)
    if found is None:
        raise not_found("command")
    return CommandOut.of(found)
