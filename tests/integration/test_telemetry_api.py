"""``GET /api/v1/devices/{id}/telemetry`` on SQLite and PostgreSQL: rollup points, the
custody cut for clinics, and precise 4xx for bad input."""

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from schemas import Heartbeat
from services.api import Role, commands, create_token
from services.eventstore import open_event_store
from services.projections.read_store import ReadModelStore
from services.projections.telemetry_store import TelemetryRollups
from tests.support.api_client import api_client, bearer
from tests.support.api_world import project

DEVICE = "HP-000888"
CLINIC_A, CLINIC_B = "clinic-alpha", "clinic-bravo"


@dataclass
class Telemetered:
    client: TestClient
    tokens: dict[str, str]
    first_assigned: datetime
    before: list[Heartbeat]
    after: list[Heartbeat]

    def get(self, query: str, who: str = "manufacturer") -> Any:
        return self.client.get(
            f"/api/v1/devices/{DEVICE}/telemetry?{query}", headers=bearer(self.tokens[who])
        )


def _beats(start: datetime, count: int) -> list[Heartbeat]:
    return [
        Heartbeat.model_construct(
            device_id=DEVICE,
            sampled_at=start + timedelta(minutes=i),
            battery_pct=90.0 - i,
            temperature_c=30.0 + i % 7,
            uptime_s=None,
            rssi_dbm=-70.0,
        )
        for i in range(count)
    ]


@pytest.fixture
def telemetered(store_url: str) -> Iterator[Telemetered]:
    """A device that sent heartbeats before any clinic held it, was given to clinic A,
    handed to B, given back to A, and then sent more."""
    store = open_event_store(store_url)
    read_models = ReadModelStore(store_url)
    tokens = {}
    for name, role, clinic in (
        ("manufacturer", Role.MANUFACTURER, None),
        ("clinic_a", Role.CLINIC, CLINIC_A),
        ("clinic_b", Role.CLINIC, CLINIC_B),
    ):
        _, tokens[name] = create_token(read_models.engine, role, clinic, name)
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    before = _beats(now - timedelta(hours=3), 30)
    store.record_heartbeats(before)
    commands.register_device(store, DEVICE, "CX-2", "fleet-ops")
    first = datetime.now(UTC)
    commands.assign_device(store, DEVICE, CLINIC_A, "fleet-ops")
    commands.assign_device(store, DEVICE, CLINIC_B, "fleet-ops")
    commands.assign_device(store, DEVICE, CLINIC_A, "fleet-ops")
    after = _beats(now + timedelta(minutes=2), 20)
    store.record_heartbeats(after)
    project(store_url)
    TelemetryRollups(read_models.engine, read_models.backend).tick(now, force=True)
    read_models.close()
    with api_client(store_url) as client:
        yield Telemetered(client, tokens, first, before, after)
    store.close()


def test_the_manufacturer_sees_every_rollup_point(telemetered: Telemetered) -> None:
    """One point per minute with a sample, each the sample's value, oldest first."""
    response = telemetered.get("metric=battery&range=24h")
    assert response.status_code == 200
    body = response.json()
    assert (body["unit"], body["resolution_s"]) == ("%", 300)
    points = body["points"]
    assert sum(point["count"] for point in points) == 50
    starts = [point["start"] for point in points]
    assert starts == sorted(starts)
    one_hour = telemetered.get("metric=temperature&range=1h").json()
    expected = {b.sampled_at: b.temperature_c for b in telemetered.after}
    found = {datetime.fromisoformat(p["start"]): p["mean"] for p in one_hour["points"]}
    assert found == expected


def test_a_clinic_sees_only_what_came_while_it_held_the_device(telemetered: Telemetered) -> None:
    """Clinic A, holding the device now, sees none of the samples from before it was
    first assigned; clinic B, which held it in between, gets 404."""
    points = telemetered.get("metric=battery&range=24h", "clinic_a").json()["points"]
    assert sum(point["count"] for point in points) == len(telemetered.after)
    minutes = telemetered.get("metric=battery&range=1h", "clinic_a").json()["points"]
    assert minutes
    assert all(
        datetime.fromisoformat(point["start"]) >= telemetered.first_assigned for point in minutes
    )
    assert telemetered.get("metric=battery&range=24h", "clinic_b").status_code == 404


@pytest.mark.parametrize(
    ("query", "status"),
    [
        ("metric=humidity&range=24h", 422),
        ("metric=battery&range=2d", 422),
        ("range=24h", 422),
        ("metric=battery&range=24h&to=2026-11-24T00:00:00", 400),
        ("metric=battery&range=24h&to=yesterday", 422),
    ],
)
def test_bad_input_gets_a_precise_4xx(telemetered: Telemetered, query: str, status: int) -> None:
    """An unknown metric or range, a missing metric, a `to` without zone or not a time."""
    response = telemetered.get(query)
    assert response.status_code == status
    assert response.headers["content-type"].startswith("application/problem+json")


def test_an_unknown_device_is_404(telemetered: Telemetered) -> None:
    """A device the platform never heard of is not found, not an empty series."""
    response = telemetered.client.get(
        "/api/v1/devices/HP-999999/telemetry?metric=battery",
        headers=bearer(telemetered.tokens["manufacturer"]),
    )
    assert response.status_code == 404
