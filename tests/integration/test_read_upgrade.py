"""Read models an earlier release wrote, brought up to this release's at the
projector's start (SQLite and PostgreSQL): a column it lacks is filled by a replay, an
index it lacks is built in place, and read models already current are left alone."""

from typing import Any

import sqlalchemy
from sqlalchemy import select, text

from schemas import GENESIS_HASH, SealedEvent, seal
from services.eventstore import EventStore
from services.projections.read_schema import read_schema_gap
from services.projections.read_store import ReadModelStore
from services.projector import Projector
from services.projector.read_upgrade import bring_up_to_date
from tests.support.streams import event_fields

DEVICE = "HP-000777"


def _story() -> list[SealedEvent]:
    steps: list[tuple[str, dict[str, Any]]] = [
        ("agent.started", {"firmware_version": "2.4.1", "agent_version": "1.0.0",
                           "boot_id": "b-1"}),
        ("fault.raised", {"fault_code": "E-VAC-LOW", "severity": "warning",
                          "message": "vacuum below 40 kPa"}),
    ]  # fmt: skip
    events, prev_hash = [], GENESIS_HASH
    for seq, (kind, data) in enumerate(steps, start=1):
        sealed = seal(event_fields(DEVICE, seq, prev_hash, kind, data))
        events.append(sealed)
        prev_hash = sealed.hash
    return events


def _alerts(read_models: ReadModelStore) -> list[tuple[str, str, str]]:
    table = read_models.tables.alerts
    with read_models.engine.connect() as connection:
        rows = connection.execute(select(table.c.alert_id, table.c.rule, table.c.status))
        return sorted((row.alert_id, row.rule, row.status) for row in rows)


def test_read_models_of_an_earlier_release_are_rebuilt_before_folding(
    store: EventStore, store_url: str
) -> None:
    store.append(_story())
    read_models = ReadModelStore(store_url)
    projector = Projector(store, read_models)
    while projector.step():
        pass
    folded = _alerts(read_models)
    assert [(rule, status) for _, rule, status in folded] == [("device_fault", "open")]
    # What an earlier release left: a table without a column this one writes, and
    # without an index this one declares.
    with read_models.engine.begin() as connection:
        connection.execute(text("DROP INDEX read_alerts_subject"))
        connection.execute(text("ALTER TABLE read_alerts DROP COLUMN escalated_at"))
    read_models.close()

    earlier = ReadModelStore(store_url)
    gap = read_schema_gap(earlier.engine, earlier.tables)
    assert gap.columns == {"read_alerts": ["escalated_at"]}
    said: list[str] = []
    result = bring_up_to_date(earlier, store_url, store, said.append)
    assert result is not None
    assert result.events == 3  # the device's two and the alert's
    assert "read_alerts lacks escalated_at" in said[0]
    names = {
        index["name"] for index in sqlalchemy.inspect(earlier.engine).get_indexes("read_alerts")
    }
    assert "read_alerts_subject" in names
    assert _alerts(earlier) == folded
    again: list[str] = []
    assert bring_up_to_date(earlier, store_url, store, again.append) is None
    assert again == []
    earlier.close()
