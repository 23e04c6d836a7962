"""What the projector's clock (``Projector.tick``, once a second) reads and writes: only
what could change a clock-driven condition, on SQLite and PostgreSQL."""

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from schemas import Heartbeat
from services.alerts import store as alert_store
from services.api import commands
from services.eventstore import EventStore
from services.projections.read_store import ReadModelStore
from services.projector import Projector
from tests.support.api_world import HandpieceWriter
from tests.support.read_alerts import alert_rows
from tests.support.streams import device_stream

_CLOCK_CHECKPOINT = "alert-engine-dead-letters"
_CLINIC = "clinic-looks"


def _catch_up(projector: Projector) -> None:
    while projector.step():
        pass


def _asked_for_heartbeats(store: EventStore) -> list[list[str]]:
    """The devices of each ``newest_heartbeats`` read the store is asked for."""
    asked: list[list[str]] = []
    newest = store.newest_heartbeats

    def counted(device_ids: Sequence[str]) -> dict[str, Heartbeat]:
        asked.append(sorted(device_ids))
        return newest(device_ids)

    store.newest_heartbeats = counted  # type: ignore[method-assign]
    return asked


def test_the_clock_reads_heartbeats_only_of_devices_silent_long_enough_to_matter(
    store: EventStore, store_url: str
) -> None:
    """A device in a session whose last event arrived within its offline time cannot be
    silent whatever its heartbeats say: the clock reads none for it; once that time has
    passed it reads them and raises device_offline."""
    device = "HP-000331"
    store.append(device_stream(device, 5))  # seq 3 opened a session
    read_models = ReadModelStore(store_url)
    now = [datetime.now(UTC) + timedelta(minutes=1)]
    projector = Projector(store, read_models, clock=lambda: now[0])
    asked = _asked_for_heartbeats(store)
    _catch_up(projector)
    projector.tick()
    assert asked == []
    assert alert_rows(read_models) == []
    now[0] += timedelta(minutes=9)
    projector.tick()
    assert asked == [[device]]
    _catch_up(projector)
    assert alert_rows(read_models) == [(device, "device_offline", "presence", "open")]
    read_models.close()


def test_an_open_offline_alert_is_judged_again_though_the_device_no_longer_counts_as_silent(
    store: EventStore, store_url: str
) -> None:
    """A clinic that lengthens its offline time after the clock raised device_offline:
    by the new time the device is not silent, and the next tick resolves the alert,
    though silence alone would not have the clock look at the device."""
    device = "HP-000333"
    commands.register_device(store, device, "CX-2", "fleet-ops")
    commands.assign_device(store, device, _CLINIC, "fleet-ops")
    writer = HandpieceWriter(store, device)
    writer.install_cartridge("CT-LOOK-1", "LOT-LOOK")
    writer.start_session(str(uuid.UUID(int=0x10C)), "op-look")
    writer.punch()
    read_models = ReadModelStore(store_url)
    later = datetime.now(UTC) + timedelta(minutes=10)
    projector = Projector(store, read_models, clock=lambda: later)
    _catch_up(projector)
    projector.tick()
    _catch_up(projector)
    assert alert_rows(read_models) == [(device, "device_offline", "presence", "open")]
    alert_store.set_policy(read_models.engine, _CLINIC, {"offline_after_s": 3600})
    projector.tick()
    _catch_up(projector)
    assert alert_rows(read_models) == [(device, "device_offline", "presence", "resolved")]
    read_models.close()


def test_a_tick_that_changes_nothing_writes_nothing(store: EventStore, store_url: str) -> None:
    """Ticks that decide nothing and see no new dead letter commit no transaction: the
    clock's checkpoint keeps the time of the last tick that decided something."""
    device = "HP-000332"
    store.append(device_stream(device, 5))  # seq 3 opened a session
    read_models = ReadModelStore(store_url)
    later = datetime.now(UTC) + timedelta(minutes=10)
    projector = Projector(store, read_models, clock=lambda: later)
    _catch_up(projector)

    def moved_at() -> object:
        with read_models.engine.connect() as connection:
            return connection.execute(
                text("SELECT updated_at FROM checkpoints WHERE name = :name"),
                {"name": _CLOCK_CHECKPOINT},
            ).scalar()

    projector.tick()  # raises device_offline: committed with the clock's checkpoint
    decided = moved_at()
    assert decided is not None
    _catch_up(projector)
    projector.tick()  # the alert stands: nothing decided
    projector.tick()
    assert moved_at() == decided
    assert alert_rows(read_models) == [(device, "device_offline", "presence", "open")]
    read_models.close()
