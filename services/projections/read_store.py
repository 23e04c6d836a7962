"""Where read models live: the ``read_*`` tables, written with their checkpoint in
one transaction (DESIGN §5: replays and restarts are exactly-once in effect).

One implementation for both databases through SQLAlchemy Core; the event store
keeps its own hand-tuned adapters because appends are its hot path, whereas here
the work is in the fold.
"""

import pickle
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import orjson
import sqlalchemy
from sqlalchemy import Connection, Engine, select
from sqlalchemy.dialects.postgresql import insert as postgres_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from services.eventstore import (
    Backend,
    Cursor,
    DatabaseUrl,
    load_checkpoint,
    open_sql_engine,
    save_checkpoint,
)
from services.projections.custody import Custody, CustodyInterval
from services.projections.device import DeviceProjection
from services.projections.tables import ReadTables, read_tables

SNAPSHOT_FORMAT: Final = 6
"""Bumped when ``DeviceProjection``'s fields, or the persisted state folds resume
from, change.  Snapshots of another format are not used; the release that bumps it
says to run ``coreline replay``, which rebuilds them all from the event store.
2: clock-skew counters and open integrity incidents.  3: custody intervals
(``read_custody``), which fix each session's and alert's clinic and which a live
projector cannot derive from older read models.  4: the safety interlocks' tally.
5: each session's cartridge lot (``read_sessions.lot``).  6: each open session's
cartridge diameters and end hash (the CSV export's evidence, ``read_sessions``)."""


@dataclass(frozen=True, slots=True)
class RegistryEntry:
    device_id: str
    clinic_id: str | None = None
    model: str | None = None
    registered: bool = False
    serial: str | None = None
    """The serial it enrolled with (``device.enrolled``)."""


@dataclass(slots=True)
class ReadModelUpdate:
    """Rows one batch of events produced."""

    devices: list[dict[str, Any]] = field(default_factory=list)
    sessions: list[dict[str, Any]] = field(default_factory=list)
    registry: list[RegistryEntry] = field(default_factory=list)
    cartridges_installed: dict[tuple[str, str], int] = field(default_factory=dict)
    """(clinic id or "", ISO week) → cartridges installed."""
    alerts_raised: list[dict[str, Any]] = field(default_factory=list)
    alert_changes: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    """(alert id, columns to set), in event order: acknowledgements and resolutions."""
    alert_history: list[dict[str, Any]] = field(default_factory=list)
    """Rows of ``read_alert_history``: each written once, whatever refolds a batch."""
    custody: list[Custody] = field(default_factory=list)
    """Devices whose custody changed, with all their intervals."""


class ReadModelStore:
    def __init__(self, url: str, suffix: str = "") -> None:
        self.backend = DatabaseUrl.parse(url).backend
        self.tables: ReadTables = read_tables(suffix)
        self.engine: Engine = open_sql_engine(url, json_serializer=_JSON_WRITERS[self.backend])
        self.tables.metadata.create_all(self.engine)
        self._upserts: dict[str, Any] = {}
        """Each table's upsert, built once: building one (the ``excluded`` columns, the
        conflict clause) cost more than executing it on the live projector's small
        batches."""

    # -- reading -----------------------------------------------------------

    def checkpoint(self, name: str) -> Cursor:
        with self.engine.connect() as connection:
            return load_checkpoint(connection, name)

    @contextmanager
    def _reading(self, connection: Connection | None) -> Iterator[Connection]:
        """``connection`` if given (a batch reads through the one it commits with:
        each checkout is a ping and a wait), else one of the pool's for this read."""
        if connection is not None:
            yield connection
            return
        with self.engine.connect() as own:
            yield own

    def projections(
        self, device_ids: Iterable[str], connection: Connection | None = None
    ) -> dict[str, DeviceProjection]:
        """The saved folds of these devices (absent: never seen, or saved by an older
        format, which the caller refolds from the stream)."""
        devices = self.tables.devices
        with self._reading(connection) as reading:
            rows = reading.execute(
                select(devices.c.device_id, devices.c.snapshot).where(
                    devices.c.device_id.in_(list(device_ids))
                )
            )
            found = {}
            for device_id, snapshot in rows:
                version, projection = pickle.loads(snapshot)  # noqa: S301 - our own rows
                if version == SNAPSHOT_FORMAT:
                    found[device_id] = projection
            return found

    def devices_to_watch(self) -> list[str]:
        """Devices the alert engine's clock must look at: in a session, or waiting for
        a missing event."""
        devices = self.tables.devices
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(devices.c.device_id).where(
                    devices.c.open_session_id.is_not(None) | devices.c.waiting_for_seq.is_not(None)
                )
            )
            return [row[0] for row in rows]

    def registry(
        self, device_ids: Iterable[str], connection: Connection | None = None
    ) -> dict[str, RegistryEntry]:
        table = self.tables.registry
        with self._reading(connection) as reading:
            rows = reading.execute(
                select(
                    table.c.device_id, table.c.clinic_id, table.c.model, table.c.registered,
                    table.c.serial,
                ).where(table.c.device_id.in_(list(device_ids)))
            )  # fmt: skip
            return {
                row[0]: RegistryEntry(row[0], row[1], row[2], bool(row[3]), row[4]) for row in rows
            }

    def custody(
        self, device_ids: Iterable[str], connection: Connection | None = None
    ) -> dict[str, Custody]:
        """The custody intervals of these devices (absent: never assigned)."""
        table = self.tables.custody
        with self._reading(connection) as reading:
            rows = reading.execute(
                select(table)
                .where(table.c.device_id.in_(list(device_ids)))
                .order_by(table.c.device_id, table.c.assigned_seq)
            )
            intervals: dict[str, list[CustodyInterval]] = {}
            for row in rows:
                intervals.setdefault(row.device_id, []).append(custody_interval(row))
        return {device: Custody(device, tuple(found)) for device, found in intervals.items()}

    # -- writing -----------------------------------------------------------

    def commit(
        self,
        update: ReadModelUpdate,
        checkpoint_name: str,
        cursor: Cursor,
        also: Callable[[Connection], None] | None = None,
    ) -> None:
        """Write the batch's rows (and ``also``'s) and move the checkpoint, all or nothing."""
        with self.engine.begin() as connection:
            self.write(connection, update)
            if also is not None:
                also(connection)
            save_checkpoint(connection, checkpoint_name, cursor)

    @contextmanager
    def pipelined(self, connection: Connection) -> Iterator[None]:
        """Writes executed inside go to PostgreSQL without waiting for each one's answer
        (psycopg's pipeline mode): a batch's rows, decisions and checkpoint take one
        round trip instead of one a table, each a wait for the interpreter lock behind
        the process's other threads.  An error is raised by the time this is left, as
        SQLAlchemy's own (a broken connection is then an ``OperationalError``, which the
        projector waits out, as when SQLAlchemy meets it)."""
        if self.backend is not Backend.POSTGRES:
            yield
            return
        dialect = connection.dialect
        try:
            with connection.connection.driver_connection.pipeline():  # type: ignore[union-attr]
                yield
        except dialect.loaded_dbapi.Error as error:
            raise sqlalchemy.exc.DBAPIError.instance(
                None, None, error, dialect.loaded_dbapi.Error, dialect=dialect
            ) from error

    def write(self, connection: Connection, update: ReadModelUpdate) -> None:
        tables = self.tables
        if update.registry:
            rows = [_registry_row(entry) for entry in update.registry]
            self._upsert(connection, tables.registry, rows, ["device_id"])
        if update.devices:
            self._upsert(connection, tables.devices, update.devices, ["device_id"])
        if update.sessions:
            self._upsert(connection, tables.sessions, update.sessions, ["session_id"])
        if update.custody:
            rows = [_custody_row(interval) for custody in update.custody
                    for interval in custody.intervals]  # fmt: skip
            self._upsert(connection, tables.custody, rows, ["device_id", "assigned_seq"])
        if update.alerts_raised:
            insert = self._insert(tables.alerts)
            connection.execute(
                insert.on_conflict_do_nothing(index_elements=["alert_id"]), update.alerts_raised
            )
        for alert_id, columns in update.alert_changes:
            connection.execute(
                tables.alerts.update().where(tables.alerts.c.alert_id == alert_id).values(**columns)
            )
        if update.alert_history:
            insert = self._insert(tables.alert_history)
            connection.execute(
                insert.on_conflict_do_nothing(index_elements=["event_id"]), update.alert_history
            )
        if update.cartridges_installed:
            weeks = tables.cartridge_weeks
            rows = [
                {"clinic_id": clinic, "week": week, "installed": count}
                for (clinic, week), count in update.cartridges_installed.items()
            ]
            insert = self._insert(weeks).values(rows)
            connection.execute(
                insert.on_conflict_do_update(
                    index_elements=["clinic_id", "week"],
                    set_={"installed": weeks.c.installed + insert.excluded.installed},
                )
            )

    def _insert(self, table: sqlalchemy.Table) -> Any:
        return (postgres_insert if self.backend is Backend.POSTGRES else sqlite_insert)(table)

    def _upsert(
        self,
        connection: Connection,
        table: sqlalchemy.Table,
        rows: list[dict[str, Any]],
        key: list[str],
    ) -> None:
        statement = self._upserts.get(table.name)
        if statement is None:
            insert = self._insert(table)
            # A generated column is the database's to write.
            columns = [c.name for c in table.columns if c.name not in key and c.computed is None]
            statement = insert.on_conflict_do_update(
                index_elements=key, set_={name: insert.excluded[name] for name in columns}
            )
            self._upserts[table.name] = statement
        # Chunks keep SQLite under its bound-parameter limit.
        for start in range(0, len(rows), 500):
            connection.execute(statement, rows[start : start + 500])

    def close(self) -> None:
        self.engine.dispose()


def snapshot(projection: DeviceProjection) -> bytes:
    return pickle.dumps((SNAPSHOT_FORMAT, projection), protocol=pickle.HIGHEST_PROTOCOL)


def document(value: Any) -> Any:
    """A dataclass (with datetimes, enums, tuples inside) as plain JSON values."""
    return orjson.loads(orjson.dumps(value))


def stored_document(value: Any) -> orjson.Fragment:
    """``value`` as the JSON text of a ``summary`` or ``audit`` cell, serialised once:
    the store's engine writes it unchanged, where ``document``'s plain values would be
    parsed back and serialised a second time.  Reads give ``document(value)``."""
    return orjson.Fragment(orjson.dumps(value))


def _json_bytes(value: Any) -> bytes:
    # Keys as ``json.dumps`` writes them (an int key as its digits), for the plain
    # values other writers of these columns hand over.
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)


def _json_text(value: Any) -> str:
    return _json_bytes(value).decode()


_JSON_WRITERS: Final[dict[Backend, Callable[[Any], Any]]] = {
    # psycopg takes the bytes as they are; SQLite would store bytes as a BLOB.
    Backend.POSTGRES: _json_bytes,
    Backend.SQLITE: _json_text,
}


def _registry_row(entry: RegistryEntry) -> dict[str, Any]:
    return {"device_id": entry.device_id, "clinic_id": entry.clinic_id, "model": entry.model,
            "registered": entry.registered, "serial": entry.serial}  # fmt: skip


def _custody_row(interval: CustodyInterval) -> dict[str, Any]:
    return {"device_id": interval.device_id, "assigned_seq": interval.assigned_seq,
            "clinic_id": interval.clinic_id, "from_seq": interval.from_seq,
            "to_seq": interval.to_seq, "assigned_at": interval.assigned_at,
            "released_at": interval.released_at}  # fmt: skip


def custody_interval(row: Any) -> CustodyInterval:
    """An interval from its ``read_custody`` row (SQLite hands times back without zone)."""
    return CustodyInterval(
        device_id=row.device_id, clinic_id=row.clinic_id, from_seq=int(row.from_seq),
        to_seq=None if row.to_seq is None else int(row.to_seq),
        assigned_seq=int(row.assigned_seq), assigned_at=_aware(row.assigned_at),
        released_at=None if row.released_at is None else _aware(row.released_at),
    )  # fmt: skip


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
