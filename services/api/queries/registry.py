"""The registry as the manufacturer manages it: every device the platform knows (it
registered them, or they reported), with what service and assignment screens need,
and a device's registry history (registered, assigned, serviced) from its stream."""

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import orjson
from sqlalchemy import Connection, select, union

from schemas.streams import registry_stream
from services.api.queries.tables import READ, aware
from services.eventstore import EventStore

_devices, _registry = READ.devices, READ.registry
_REGISTRY_TYPES: Final = frozenset({"device.registered", "device.assigned", "device.serviced"})


@dataclass(frozen=True, slots=True)
class ManagedDevice:
    device_id: str
    registered: bool
    model: str | None
    clinic_id: str | None
    reported: bool
    """Whether the device has sent events (a registered one may not have yet)."""
    lifetime_actuations: int
    actuations_at_service: int
    actuations_since_service: int
    last_serviced_at: str | None
    locked: bool
    active_interlocks: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RegistryEntry:
    seq: int
    type: str
    occurred_at: datetime
    by: str
    detail: str


def managed_devices(connection: Connection, limit: int = 500) -> list[ManagedDevice]:
    """Devices registered or reporting, in serial order (the manufacturer's view)."""
    known = union(select(_registry.c.device_id), select(_devices.c.device_id)).subquery()
    rows = connection.execute(
        select(
            known.c.device_id,
            _registry.c.registered,
            _registry.c.model,
            _registry.c.clinic_id,
            _devices.c.clinic_id.label("folded_clinic"),
            _devices.c.summary,
        )
        .select_from(known)
        .outerjoin(_registry, _registry.c.device_id == known.c.device_id)
        .outerjoin(_devices, _devices.c.device_id == known.c.device_id)
        .order_by(known.c.device_id)
        .limit(limit)
    )
    return [_managed(row) for row in rows]


def managed_device(
    connection: Connection, store: EventStore, device_id: str
) -> ManagedDevice | None:
    """One device: its registry facts from its registry stream (so a change shows at
    once, before the projector folds it), its usage and interlocks from its read model."""
    registered, model, clinic, recorded = False, None, None, False
    for event in store.read_stream(registry_stream(device_id)):
        data: dict[str, Any] = orjson.loads(event.body)["data"]
        recorded = recorded or event.type in _REGISTRY_TYPES
        if event.type == "device.registered":
            registered, model = True, data["model"]
        elif event.type == "device.assigned":
            clinic = data["clinic_id"]
    folded = connection.execute(
        select(_devices.c.clinic_id, _devices.c.summary).where(_devices.c.device_id == device_id)
    ).first()
    if not recorded and folded is None:
        return None
    values = {
        "device_id": device_id, "registered": registered, "model": model,
        "clinic_id": clinic if recorded else None,
        "folded_clinic": None if folded is None else folded.clinic_id,
        "summary": None if folded is None else folded.summary,
    }  # fmt: skip
    return _managed(_Row(values))


def registry_history(store: EventStore, device_id: str, limit: int = 200) -> list[RegistryEntry]:
    """The device's registrations, assignments and service visits, newest first."""
    entries = []
    for event in store.read_stream(registry_stream(device_id)):
        if event.type not in _REGISTRY_TYPES:
            continue
        data: dict[str, Any] = orjson.loads(event.body)["data"]
        entries.append(
            RegistryEntry(event.seq, event.type, event.occurred_at, *_described(event.type, data))
        )
    return entries[::-1][:limit]


def known_clinics(connection: Connection) -> list[str]:
    """Clinic ids devices are or were assigned to, for the assignment form's hints."""
    rows = connection.execute(
        select(_registry.c.clinic_id)
        .where(_registry.c.clinic_id.is_not(None))
        .distinct()
        .order_by(_registry.c.clinic_id)
    )
    return [row[0] for row in rows]


class _Row:
    def __init__(self, values: dict[str, Any]) -> None:
        self.__dict__.update(values)


def _managed(row: Any) -> ManagedDevice:
    summary: dict[str, Any] = row.summary or {}
    interlocks: dict[str, Any] = summary.get("interlocks") or {}
    return ManagedDevice(
        device_id=row.device_id,
        registered=bool(row.registered),
        model=row.model,
        clinic_id=row.clinic_id or row.folded_clinic,
        reported=row.summary is not None,
        lifetime_actuations=int(summary.get("lifetime_actuations", 0)),
        actuations_at_service=int(summary.get("actuations_at_service", 0)),
        actuations_since_service=int(summary.get("actuations_since_service", 0)),
        last_serviced_at=summary.get("last_serviced_at"),
        locked=bool(interlocks.get("locked", False)),
        active_interlocks=tuple(held["interlock"] for held in interlocks.get("active", ())),
    )


def _described(kind: str, data: dict[str, Any]) -> tuple[str, str]:
    if kind == "device.registered":
        return data["registered_by"], f"model {data['model']}"
    if kind == "device.assigned":
        clinic = data["clinic_id"]
        return data[
            "assigned_by"
        ], "taken back from its clinic" if clinic is None else f"to {clinic}"
    counted = data.get("actuations_at_service")
    at = "count not given" if counted is None else f"at {counted:,} actuations"
    notes = data.get("notes") or ""
    return data["performed_by"], f"{at}{' · ' + notes if notes else ''}"


def as_moment(text: str | None) -> datetime | None:
    """A summary's time (JSON text) as a datetime, for the templates' ``when``."""
    return None if text is None else aware(datetime.fromisoformat(text))
