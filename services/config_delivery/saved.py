"""The book's rows: loaded whole when the delivery loop starts, and what a batch
changed saved with the loop's checkpoint in one transaction (so a crash leaves both
behind or both ahead, and the versions a refold decides are the same)."""

from collections.abc import Iterable, Mapping
from typing import Any, Final

import orjson
from sqlalchemy import Connection, Table, select
from sqlalchemy.dialects.postgresql import insert as postgres_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from schemas.config_events import ClinicBounds, ConfigLayer, LayerSettings
from schemas.device_config import DeviceSettings
from services.config_delivery.book import (
    BOUNDS_LAYER,
    BookChanges,
    Command,
    CommandState,
    ConfigBook,
    DeviceConfig,
)
from services.config_delivery.tables import config_layers, device_commands, device_config
from services.eventstore import Cursor, save_checkpoint

_OPEN: Final = (CommandState.PENDING.value, CommandState.EXPIRED.value)


def load_book(connection: Connection) -> ConfigBook:
    book = ConfigBook()
    for row in connection.execute(select(config_layers)).mappings():
        settings = orjson.loads(row["settings"])
        if row["layer"] == BOUNDS_LAYER:
            book.bounds = ClinicBounds.model_validate(settings)
            book.authors[(BOUNDS_LAYER, "")] = (row["changed_at"], row["changed_by"])
        else:
            book.authors[(row["layer"], row["subject"])] = (row["changed_at"], row["changed_by"])
            key = (ConfigLayer(row["layer"]), row["subject"])
            book.layers[key] = LayerSettings.model_validate(settings)
    for row in connection.execute(select(device_config)).mappings():
        book.devices[row["device_id"]] = _device(row)
    opened = select(device_commands).where(device_commands.c.state.in_(_OPEN))
    for row in connection.execute(opened).mappings():
        book.open_commands[row["command_id"]] = command_of(row)
    return book


def save(
    connection: Connection,
    book: ConfigBook,
    changes: BookChanges,
    checkpoint: str,
    cursor: Cursor,
) -> None:
    """Write every row ``changes`` names and move ``checkpoint`` to ``cursor``."""
    for layer, subject in changes.layers:
        at, by = book.authors[(layer.value, subject)]
        settings = book.layers[(layer, subject)].named()
        _upsert(connection, config_layers, [_layer_row(layer.value, subject, settings, at, by)])
    if changes.bounds:
        at, by = book.authors[(BOUNDS_LAYER, "")]
        bounds = book.bounds.model_dump(mode="json")
        _upsert(connection, config_layers, [_layer_row(BOUNDS_LAYER, "", bounds, at, by)])
    _upsert(connection, device_config, [_device_row(book.devices[d]) for d in changes.devices])
    _upsert(connection, device_commands, [_command_row(c) for c in changes.commands.values()])
    save_checkpoint(connection, checkpoint, cursor)


def _layer_row(layer: str, subject: str, settings: Any, at: str, by: str) -> dict[str, Any]:
    return {"layer": layer, "subject": subject, "settings": orjson.dumps(settings).decode(),
            "changed_at": at, "changed_by": by}  # fmt: skip


def _device_row(device: DeviceConfig) -> dict[str, Any]:
    settings = device.desired_settings
    state = device.state
    return {
        "device_id": device.device_id,
        "model": device.model,
        "clinic_id": device.clinic_id,
        "registered": device.registered,
        "decommissioned": device.decommissioned,
        "last_service_actuations": device.last_service_actuations,
        "desired_version": device.desired_version,
        "desired_digest": device.desired_digest,
        "desired_settings": None if settings is None else settings.model_dump_json(),
        "desired_at": device.desired_at,
        "reported_version": device.reported_version,
        "reported_digest": device.reported_digest,
        "applied_at": device.applied_at,
        "refused_version": device.refused_version,
        "refused_reason": device.refused_reason,
        "refused_at": device.refused_at,
        "state": None if state is None else state.value,
    }


def _device(row: Mapping[Any, Any]) -> DeviceConfig:
    settings = row["desired_settings"]
    return DeviceConfig(
        device_id=row["device_id"],
        model=row["model"],
        clinic_id=row["clinic_id"],
        registered=bool(row["registered"]),
        decommissioned=bool(row["decommissioned"]),
        last_service_actuations=row["last_service_actuations"],
        desired_version=row["desired_version"],
        desired_digest=row["desired_digest"],
        desired_settings=None if settings is None else DeviceSettings.model_validate_json(settings),
        desired_at=row["desired_at"],
        reported_version=row["reported_version"],
        reported_digest=row["reported_digest"],
        applied_at=row["applied_at"],
        refused_version=row["refused_version"],
        refused_reason=row["refused_reason"],
        refused_at=row["refused_at"],
    )


def _command_row(command: Command) -> dict[str, Any]:
    return {
        "command_id": command.command_id,
        "device_id": command.device_id,
        "cmd": command.cmd,
        "args": orjson.dumps(command.args).decode(),
        "issued_by": command.issued_by,
        "issued_at": command.issued_at,
        "expires_at": command.expires_at,
        "state": command.state.value,
        "answered_at": command.answered_at,
        "expired_at": command.expired_at,
        "reason": command.reason,
        "detail": command.detail,
        "result": orjson.dumps(command.result).decode(),
    }


def command_of(row: Mapping[Any, Any]) -> Command:
    return Command(
        command_id=row["command_id"],
        device_id=row["device_id"],
        cmd=row["cmd"],
        args=orjson.loads(row["args"]),
        issued_by=row["issued_by"],
        issued_at=row["issued_at"],
        expires_at=row["expires_at"],
        state=CommandState(row["state"]),
        answered_at=row["answered_at"],
        expired_at=row["expired_at"],
        reason=row["reason"],
        detail=row["detail"],
        result=orjson.loads(row["result"]),
    )


def _upsert(connection: Connection, table: Table, rows: Iterable[dict[str, Any]]) -> None:
    batch = list(rows)
    if not batch:
        return
    keys = [column.name for column in table.primary_key.columns]
    insert = postgres_insert if connection.dialect.name == "postgresql" else sqlite_insert
    statement = insert(table)
    others = {name: statement.excluded[name] for name in batch[0] if name not in keys}
    connection.execute(statement.on_conflict_do_update(index_elements=keys, set_=others), batch)
