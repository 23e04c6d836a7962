"""SQLite adapter: the embedded default (``sqlite:///path/to/file.db``).

SQLite admits one writer at a time (``BEGIN IMMEDIATE`` takes the write lock before
anything is read), so positions are handed out in commit order and ``Cursor.commit``
is always 0: a reader can never see position N+1 before N is committed.
"""

import json
import sqlite3
import time
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, Final
from uuid import UUID

from schemas import Heartbeat, SealedEvent
from services.eventstore.append_plan import (
    EventRow,
    StoredLink,
    StreamKey,
    custody_from,
    neighbour_ranges,
    plan_append,
    seals_to_store,
)
from services.eventstore.driver_errors import DriverErrors
from services.eventstore.errors import SchemaMissingError
from services.eventstore.portable import CUSTODY, Custody, PortableQueries
from services.eventstore.ports import (
    DEAD_LETTER_RAW_LIMIT,
    AppendResult,
    Cursor,
    DeadLetter,
    EventRecord,
    NextEvent,
    Presence,
    StoredDeadLetter,
    StoredEvent,
    StoredSeal,
    StreamSeal,
    matching_read,
    next_events,
)
from services.eventstore.sqlite_schema import SCHEMA_VERSION, connect

_POLL_S: Final = 0.05
"""How often a waiting projector looks at the file (SQLite has no notifications)."""
SQLITE_ERRORS: Final = DriverErrors(
    refused=(sqlite3.DataError, sqlite3.IntegrityError), failed=sqlite3.Error
)
"""How sqlite3's exceptions become the store's own (also used by the schema upgrade)."""
_EVENT_COLUMNS: Final = (
    "position, stream_id, device_id, seq, event_id, type, occurred_at, received_at, "
    "hash, prev_hash, body"
)
# The next rows' keys, of them the matching ones and the last (where the reader's
# checkpoint moves) read whole: no other event's body leaves the database.
_READ_MATCHING: Final = (
    "WITH scanned AS (SELECT position, stream_id, type FROM events WHERE position > ? "  # noqa: S608
    f"ORDER BY position LIMIT ?) SELECT {_EVENT_COLUMNS} FROM events WHERE position IN "
    "(SELECT position FROM scanned WHERE (substr(stream_id, 1, ?) = ? "
    "AND (? IS NULL OR type IN (SELECT value FROM json_each(?)))) "
    "OR position = (SELECT max(position) FROM scanned)) ORDER BY position"
)
_ROW_COLUMNS: Final = (
    "stream_id, device_id, seq, event_id, type, occurred_at, received_at, hash, prev_hash, body"
)
_INSERT_EVENTS: Final = f"INSERT INTO events ({_ROW_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"  # noqa: S608
_INSERT_HELD: Final = (
    f"INSERT INTO held_events ({_ROW_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"  # noqa: S608
)
_DELETE_HELD: Final = "DELETE FROM held_events WHERE stream_id = ? AND seq = ? AND hash = ?"
_CUSTODY: Final = CUSTODY.format(
    wanted="SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') FROM json_each(?)"
)


class SqliteEventStore(PortableQueries):
    """The event store in one SQLite file (WAL, ``synchronous=FULL``: an append that
    returned survives power loss, which is what lets the gateway acknowledge it)."""

    PARAMETERS: ClassVar[dict[str, str]] = {"stream": ":stream_id", "after": ":after_seq"}

    # The shared queries reach the database too: they fail like every other method.
    find_gaps = SQLITE_ERRORS(PortableQueries.find_gaps)
    contiguous_through = SQLITE_ERRORS(PortableQueries.contiguous_through)
    head = SQLITE_ERRORS(PortableQueries.head)
    count_events = SQLITE_ERRORS(PortableQueries.count_events)
    stream_ids = SQLITE_ERRORS(PortableQueries.stream_ids)

    @SQLITE_ERRORS
    def __init__(self, path: Path) -> None:
        self._connection = connect(path)
        version = self._connection.execute("PRAGMA user_version").fetchone()[0]
        if version < SCHEMA_VERSION:
            self._connection.close()
            found = f"is at schema version {version}" if version else "has no Coreline schema"
            raise SchemaMissingError(
                f"the SQLite database {path} {found}, this Coreline needs version "
                f"{SCHEMA_VERSION}: run `coreline db upgrade`"
            )
        self._data_version: int = self._connection.execute("PRAGMA data_version").fetchone()[0]

    @SQLITE_ERRORS
    def append(
        self,
        events: Sequence[SealedEvent],
        dead_letters: Sequence[DeadLetter] = (),
        *,
        received_at: datetime | None = None,
        seals: Sequence[StreamSeal] = (),
    ) -> AppendResult:
        if not events and not dead_letters:
            return AppendResult.empty()
        received = received_at or datetime.now(UTC)
        with self._write() as connection:
            return self._append_in(connection, events, dead_letters, received, seals)

    @SQLITE_ERRORS
    def append_next(
        self, stream_id: str, build: NextEvent, *, received_at: datetime | None = None
    ) -> SealedEvent | None:
        received = received_at or datetime.now(UTC)
        with self._write() as connection:  # BEGIN IMMEDIATE: no other writer until COMMIT
            return self._append_next_in(connection, stream_id, build, received)

    @SQLITE_ERRORS
    def append_with_next(
        self,
        events: Sequence[SealedEvent],
        nexts: Sequence[tuple[str, NextEvent]],
        *,
        received_at: datetime | None = None,
    ) -> tuple[AppendResult, list[SealedEvent | None]]:
        received = received_at or datetime.now(UTC)
        with self._write() as connection:
            result = (
                self._append_in(connection, events, (), received)
                if events
                else AppendResult.empty()
            )
            built = [self._append_next_in(connection, stream_id, build, received)
                     for stream_id, build in nexts]  # fmt: skip
            return result, built

    def _append_next_in(
        self, connection: sqlite3.Connection, stream_id: str, build: NextEvent, received: datetime
    ) -> SealedEvent | None:
        head = connection.execute(
            f"SELECT {_EVENT_COLUMNS} FROM events WHERE stream_id = ? "  # noqa: S608
            "ORDER BY seq DESC LIMIT 1",
            (stream_id,),
        ).fetchone()
        events = next_events(build(None if head is None else _stored_event(head)))
        if events:
            self._append_in(connection, events, (), received)
        return events[-1] if events else None

    def _append_in(
        self,
        connection: sqlite3.Connection,
        events: Sequence[SealedEvent],
        dead_letters: Sequence[DeadLetter],
        received: datetime,
        seals: Sequence[StreamSeal] = (),
    ) -> AppendResult:
        custody = self._custody(connection, events)
        neighbours = self._stored_neighbours(connection, events) | custody.successors
        plan = plan_append(
            events, neighbours, received_at=received, heads=custody.heads, held=custody.held
        )
        # Joins in plan order: a stream's events take positions in seq order.
        connection.executemany(_INSERT_EVENTS, [_row_values(row) for row in plan.joins])
        connection.executemany(
            _DELETE_HELD, [(row.stream_id, row.seq, row.hash) for row in plan.released]
        )
        connection.executemany(_INSERT_HELD, [_row_values(row) for row in plan.holds])
        received_text = _timestamp(received)
        connection.executemany(
            "INSERT INTO dead_letters (received_at, topic, reason, detail, device_id, seq, "
            "raw, raw_size) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [_dead_letter_row(letter, received_text) for letter in (*dead_letters, *plan.rejected)],
        )
        connection.executemany(
            "INSERT OR IGNORE INTO seals (stream_id, seq, key_id, sig, stored_at) "
            "VALUES (?, ?, ?, ?, ?)",
            [
                (seal.stream_id, seal.seq, seal.key_id, seal.sig, received_text)
                for seal in seals_to_store(seals, neighbours, plan, custody.held)
            ],
        )
        return plan.result()

    @SQLITE_ERRORS
    def read_seals(self, stream_id: str, from_seq: int = 1, limit: int = 0) -> list[StoredSeal]:
        rows = self._connection.execute(
            "SELECT stream_id, seq, key_id, sig, stored_at FROM seals "
            "WHERE stream_id = ? AND seq >= ? ORDER BY seq LIMIT ?",
            (stream_id, from_seq, limit or -1),
        ).fetchall()
        return [
            StoredSeal(row[0], row[1], row[2], row[3], _parse_timestamp(row[4])) for row in rows
        ]

    @SQLITE_ERRORS
    def read(self, after: Cursor, limit: int = 1000) -> list[StoredEvent]:
        rows = self._connection.execute(
            f"SELECT {_EVENT_COLUMNS} FROM events WHERE position > ? ORDER BY position LIMIT ?",  # noqa: S608
            (after.position, limit),
        ).fetchall()
        return [_stored_event(row) for row in rows]

    @SQLITE_ERRORS
    def read_matching(
        self,
        after: Cursor,
        limit: int = 1000,
        *,
        stream_prefix: str = "",
        types: Collection[str] | None = None,
    ) -> tuple[list[StoredEvent], Cursor]:
        wanted = None if types is None else json.dumps(sorted(types))
        asked = (after.position, limit, len(stream_prefix), stream_prefix, wanted, wanted)
        rows = self._connection.execute(_READ_MATCHING, asked).fetchall()
        return matching_read([_stored_event(row) for row in rows], after, stream_prefix, types)

    @SQLITE_ERRORS
    def read_records(self, after: Cursor, limit: int = 10_000) -> list[EventRecord]:
        rows = self._connection.execute(
            "SELECT position, stream_id, device_id, seq, type, received_at, hash, body "
            "FROM events WHERE position > ? ORDER BY position LIMIT ?",
            (after.position, limit),
        ).fetchall()
        return [
            EventRecord(Cursor(0, row[0]), row[1], row[2], row[3], row[4],
                        _parse_timestamp(row[5]), row[6], bytes(row[7]))
            for row in rows
        ]  # fmt: skip

    @SQLITE_ERRORS
    def read_stream(
        self, stream_id: str, from_seq: int = 1, to_seq: int | None = None, limit: int | None = None
    ) -> list[StoredEvent]:
        rows = self._connection.execute(
            f"SELECT {_EVENT_COLUMNS} FROM events WHERE stream_id = ? AND seq >= ? AND seq <= ? "  # noqa: S608
            "ORDER BY seq LIMIT ?",
            (stream_id, from_seq, to_seq if to_seq is not None else 2**62, limit or -1),
        ).fetchall()
        return [_stored_event(row) for row in rows]

    @SQLITE_ERRORS
    def dead_letters(self, after_id: int = 0, limit: int = 100) -> list[StoredDeadLetter]:
        rows = self._connection.execute(
            "SELECT id, received_at, topic, reason, detail, device_id, seq, raw, raw_size "
            "FROM dead_letters WHERE id > ? ORDER BY id LIMIT ?",
            (after_id, limit),
        ).fetchall()
        return [
            StoredDeadLetter(
                id=row[0],
                received_at=_parse_timestamp(row[1]),
                topic=row[2],
                reason=row[3],
                detail=row[4],
                device_id=row[5],
                seq=row[6],
                raw=bytes(row[7]),
                raw_size=row[8],
            )
            for row in rows
        ]

    @SQLITE_ERRORS
    def record_heartbeats(
        self, heartbeats: Sequence[Heartbeat], *, received_at: datetime | None = None
    ) -> None:
        received_text = _timestamp(received_at or datetime.now(UTC))
        with self._write() as connection:
            connection.executemany(
                "INSERT INTO heartbeats (device_id, sampled_at, received_at, battery_pct, "
                "temperature_c, uptime_s, rssi_dbm) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        beat.device_id,
                        _timestamp(beat.sampled_at),
                        received_text,
                        beat.battery_pct,
                        beat.temperature_c,
                        beat.uptime_s,
                        beat.rssi_dbm,
                    )
                    for beat in heartbeats
                ],
            )

    @SQLITE_ERRORS
    def latest_heartbeats(self, device_id: str, limit: int = 100) -> list[Heartbeat]:
        rows = self._connection.execute(
            "SELECT sampled_at, battery_pct, temperature_c, uptime_s, rssi_dbm FROM heartbeats "
            "WHERE device_id = ? ORDER BY sampled_at DESC LIMIT ?",
            (device_id, limit),
        ).fetchall()
        return [
            Heartbeat.model_construct(
                device_id=device_id,
                sampled_at=_parse_timestamp(row[0]),
                battery_pct=row[1],
                temperature_c=row[2],
                uptime_s=row[3],
                rssi_dbm=row[4],
            )
            for row in rows
        ]

    @SQLITE_ERRORS
    def newest_heartbeats(self, device_ids: Sequence[str]) -> dict[str, Heartbeat]:
        # One JSON array parameter, however many ids; each device's newest row is one
        # step down the (device_id, sampled_at) index.
        rows = self._connection.execute(
            "SELECT asked.value, h.sampled_at, h.battery_pct, h.temperature_c, h.uptime_s, "
            "h.rssi_dbm FROM json_each(?) AS asked JOIN heartbeats AS h ON h.rowid = ("
            "SELECT rowid FROM heartbeats WHERE device_id = asked.value "
            "ORDER BY sampled_at DESC LIMIT 1)",
            (json.dumps(list(device_ids)),),
        ).fetchall()
        return {
            row[0]: Heartbeat.model_construct(
                device_id=row[0],
                sampled_at=_parse_timestamp(row[1]),
                battery_pct=row[2],
                temperature_c=row[3],
                uptime_s=row[4],
                rssi_dbm=row[5],
            )
            for row in rows
        }

    @SQLITE_ERRORS
    def record_presence(self, device_id: str, online: bool, at: datetime) -> None:
        # Fixed-width UTC text compares in time order, so the guard is a plain >=.
        with self._write() as connection:
            connection.execute(
                "INSERT INTO presence (device_id, online, changed_at) VALUES (?, ?, ?) "
                "ON CONFLICT (device_id) DO UPDATE "
                "SET online = excluded.online, changed_at = excluded.changed_at "
                "WHERE excluded.changed_at >= presence.changed_at",
                (device_id, online, _timestamp(at)),
            )

    @SQLITE_ERRORS
    def presence(self, device_ids: Sequence[str] | None = None) -> dict[str, Presence]:
        if device_ids is None:
            rows = self._connection.execute(
                "SELECT device_id, online, changed_at FROM presence ORDER BY device_id"
            )
        else:
            # One JSON array parameter, however many ids: no placeholder lists to build.
            rows = self._connection.execute(
                "SELECT device_id, online, changed_at FROM presence "
                "WHERE device_id IN (SELECT value FROM json_each(?)) ORDER BY device_id",
                (json.dumps(list(device_ids)),),
            )
        return {row[0]: Presence(bool(row[1]), _parse_timestamp(row[2])) for row in rows}

    @SQLITE_ERRORS
    def wait_for_appends(self, timeout: float, *, stream_prefix: str = "") -> None:
        # data_version changes when another connection commits to the file.
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            version = self._connection.execute("PRAGMA data_version").fetchone()[0]
            if version != self._data_version:
                self._data_version = version
                return
            time.sleep(min(_POLL_S, max(0.0, deadline - time.monotonic())))

    @SQLITE_ERRORS
    def close(self) -> None:
        self._connection.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        connection = self._connection
        connection.execute("BEGIN IMMEDIATE")
        try:
            yield connection
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")

    @staticmethod
    def _custody(connection: sqlite3.Connection, events: Sequence[SealedEvent]) -> Custody:
        if not events:
            return Custody()
        wanted = json.dumps(list(custody_from(events).items()))
        return Custody.of_rows(connection.execute(_CUSTODY, (wanted,)), _held_row)

    @staticmethod
    def _stored_neighbours(
        connection: sqlite3.Connection, events: Sequence[SealedEvent]
    ) -> dict[StreamKey, StoredLink]:
        stored: dict[StreamKey, StoredLink] = {}
        for seq_range in neighbour_ranges(events):
            for seq, event_hash, prev_hash in connection.execute(
                "SELECT seq, hash, prev_hash FROM events "
                "WHERE stream_id = ? AND seq BETWEEN ? AND ?",
                (seq_range.stream_id, seq_range.first, seq_range.last),
            ):
                stored[(seq_range.stream_id, seq)] = StoredLink(event_hash, prev_hash)
        return stored


def _timestamp(moment: datetime) -> str:
    """Fixed-width UTC text, so SQLite's text order is time order."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_timestamp(text: str) -> datetime:
    # fromisoformat reads the "Z" form (Python 3.11) in C: strptime costs 20 µs a call.
    return datetime.fromisoformat(text)


def _stored_event(row: Any) -> StoredEvent:
    position, stream_id, device_id, seq, event_id, type_, occurred, received, hash_, prev, body = (
        row
    )
    return StoredEvent(
        cursor=Cursor(0, position),
        stream_id=stream_id,
        device_id=device_id,
        seq=seq,
        event_id=UUID(event_id),
        type=type_,
        occurred_at=_parse_timestamp(occurred),
        received_at=_parse_timestamp(received),
        hash=hash_,
        prev_hash=prev,
        # Only tampering stores text here; as bytes it fails verification, not the reader.
        body=body.encode() if isinstance(body, str) else bytes(body),
    )


def _row_values(row: EventRow) -> tuple[object, ...]:
    return (
        row.stream_id,
        row.device_id,
        row.seq,
        str(row.event_id),
        row.type,
        _timestamp(row.occurred_at),
        _timestamp(row.received_at),
        row.hash,
        row.prev_hash,
        row.body,
    )


def _held_row(row: tuple[Any, ...]) -> EventRow:
    stream_id, seq, hash_, prev_hash, device_id, event_id, type_, occurred, received, body = row
    return EventRow(
        stream_id=stream_id,
        device_id=device_id,
        seq=seq,
        event_id=UUID(event_id),
        type=type_,
        occurred_at=_parse_timestamp(occurred),
        received_at=_parse_timestamp(received),
        hash=hash_,
        prev_hash=prev_hash,
        body=bytes(body),
    )


def _dead_letter_row(letter: DeadLetter, received_text: str) -> tuple[object, ...]:
    rejection = letter.rejection
    return (
        received_text,
        letter.topic,
        rejection.reason.value,
        rejection.detail,
        rejection.device_id,
        rejection.seq,
        rejection.raw[:DEAD_LETTER_RAW_LIMIT],
        len(rejection.raw),
    )
