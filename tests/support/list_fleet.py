"""A fleet large enough to page through, written straight into the read models.

The rows are ``bench.api_fleet``'s (documents varied from what the real fold wrote
for a simulated handpiece), inserted with SQLAlchemy so the same loader serves
SQLite and PostgreSQL; a few devices never connected, some sessions do not reconcile
or have a broken chain, and alerts of every rule, severity and status."""

import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import orjson
from sqlalchemy import Engine, insert

from bench.api_fleet import (
    SESSION_COLUMNS,
    Fleet,
    Templates,
    device_rows,
    fold_templates,
    session_rows,
)
from schemas.platform_events import AlertRule
from services.api.queries.tables import READ, presence
from tests.support.api_world import CLINIC_A, CLINIC_B

NEVER_CONNECTED: Final = ("HP-900001", "HP-900002")
"""Registered and assigned to clinic A, never heard from."""
_SEVERITIES: Final = ("info", "warning", "critical")
_ALERT_STATUSES: Final = ("open", "open", "acknowledged", "resolved")
_STATUSES: Final = (
    "ok",
    "ok",
    "ok",
    "cartridge_low",
    "cartridge_exhausted",
    "fault",
    "service_due",
)
_templates: list[Templates] = []


@dataclass
class ListFleet:
    now: datetime
    device_ids: list[str]
    clinic_of: dict[str, str | None]
    sessions: int
    alerts: int
    alert_ids: list[str] = field(default_factory=list)


def load_list_fleet(
    engine: Engine, devices: int, sessions: int, alerts: int, seed: int = 5
) -> ListFleet:
    """``devices`` devices (clinic A, clinic B and a few of no clinic), ``sessions``
    sessions over the last 90 days and ``alerts`` alerts over the last 30."""
    if not _templates:
        _templates.append(fold_templates(2.0))
    templates = _templates[0]
    rng = random.Random(seed)
    now = datetime.now(UTC).replace(microsecond=0)
    device_ids = [f"HP-{n:06d}" for n in range(1, devices + 1)]
    clinic_of: dict[str, str | None] = {
        device: CLINIC_A if n % 5 < 3 else CLINIC_B if n % 50 else None
        for n, device in enumerate(device_ids)
    }
    statuses = [_STATUSES[n % len(_STATUSES)] for n in range(devices)]
    fleet = Fleet(now, device_ids, [CLINIC_A, CLINIC_B], statuses, sessions)
    loaded = ListFleet(now, device_ids, clinic_of, sessions, alerts)
    device_table, session_table = READ.devices, READ.sessions
    with engine.begin() as connection:
        device_values, registry_values, presence_values = [], [], []
        for device, registry, present in device_rows(fleet, templates, rng, clinic_of):
            device_values.append(_row(device_table, device))
            if registry is not None:
                registry_values.append(
                    dict(
                        zip(
                            ("device_id", "clinic_id", "model", "registered"), registry, strict=True
                        )
                    )
                )
            if present is not None:
                presence_values.append(
                    dict(zip(("device_id", "online", "changed_at"), present, strict=True))
                )
        for device_id in NEVER_CONNECTED:
            device_values.append(_silent(templates, device_id, now))
            registry_values.append(
                {"device_id": device_id, "clinic_id": CLINIC_A, "model": "CX-2", "registered": True}
            )
            clinic_of[device_id] = CLINIC_A
        connection.execute(insert(device_table), device_values)
        connection.execute(insert(READ.registry), registry_values)
        connection.execute(insert(presence), presence_values)
        session_values = []
        for index, row in enumerate(session_rows(fleet, templates, rng, clinic_of, set())):
            values = _row(session_table, row, SESSION_COLUMNS)
            if index % 37 == 0 and values["reconciled"] is not None:
                values["reconciled"] = False
            if index % 53 == 0:
                values["chain_status"] = "broken"
            session_values.append(values)
        connection.execute(insert(session_table), session_values)
        alert_values = [_alert(rng, n, device_ids, clinic_of, now) for n in range(alerts)]
        connection.execute(insert(READ.alerts), alert_values)
        loaded.alert_ids = [values["alert_id"] for values in alert_values]
    return loaded


def _row(
    table: Any, values: tuple[Any, ...], columns: Sequence[str] | None = None
) -> dict[str, Any]:
    """``values`` by ``columns``, else by the table's first columns."""
    names = list(columns) if columns else [column.name for column in table.columns][: len(values)]
    row = dict(zip(names, values, strict=True))
    for name in ("summary", "audit"):
        if isinstance(row.get(name), str):
            row[name] = orjson.loads(row[name])
    return row


def _silent(templates: Templates, device_id: str, now: datetime) -> dict[str, Any]:
    """The read row a registration and an assignment fold into: no word from the device."""
    summary = dict(templates.summary)
    summary.update(
        device_id=device_id, firmware_version=None, agent_version=None, cartridge=None,
        forecast=None, lifetime_actuations=0, lifetime_cores=0, lifetime_sessions=0,
        actuations_since_service=0, open_faults=[], open_session_id=None, status="ok",
        attention=[], last_occurred_at=now.isoformat(), last_received_at=now.isoformat(),
    )  # fmt: skip
    return {
        "device_id": device_id, "clinic_id": CLINIC_A, "status": "ok", "firmware_version": None,
        "last_seen": now, "summary": summary, "snapshot": templates.snapshot,
        "open_session_id": None, "waiting_for_seq": None, "updated_at": now,
    }  # fmt: skip


def _alert(
    rng: random.Random,
    index: int,
    device_ids: list[str],
    clinic_of: dict[str, str | None],
    now: datetime,
) -> dict[str, Any]:
    rules = list(AlertRule)
    device_id = device_ids[rng.randrange(len(device_ids))]
    rule = rules[index % len(rules)]
    status = _ALERT_STATUSES[index % len(_ALERT_STATUSES)]
    raised = now - timedelta(seconds=rng.uniform(60, 30 * 86_400))
    return {
        "alert_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "device_id": device_id, "clinic_id": clinic_of[device_id], "rule": rule.value,
        "subject": f"CT-{index:06d}",
        "severity": _SEVERITIES[index // len(rules) % len(_SEVERITIES)],
        "status": status, "message": f"{rule.value.replace('_', ' ')} on {device_id}",
        "context": {}, "raised_at": raised,
        "acknowledged_at": raised + timedelta(minutes=5) if status != "open" else None,
        "acknowledged_by": "fleet-ops" if status != "open" else None,
        "resolved_at": raised + timedelta(minutes=9) if status == "resolved" else None,
        "resolved_by": "fleet-ops" if status == "resolved" else None,
        "note": None, "last_seq": index + 1,
    }  # fmt: skip
