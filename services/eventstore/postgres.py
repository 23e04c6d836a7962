"""PostgreSQL adapter (psycopg 3).  Schema: Alembic migrations, ``coreline db upgrade``.

Global order without skipped events
-----------------------------------
A serial position alone is not safe to tail: transaction A takes position 10,
transaction B takes 11 and commits first, a reader returns 11 and moves its
checkpoint past 10, and A's event, committed a moment later, is never read.

Every event row therefore records its writer's transaction id
(``pg_current_xact_id()``), and readers order by ``(tx_id, position)`` but only
return rows whose ``tx_id`` is below ``pg_snapshot_xmin(pg_current_snapshot())``,
the oldest transaction still running.  Every transaction below that horizon has
ended, so no row with a smaller ``tx_id`` can ever become visible again: a reader
never returns a row past one that is still invisible.  Rows of still-open
transactions are simply returned on a later read, after their commit.  The cost is
that one long-running transaction anywhere in the cluster holds tailing back until
it ends (never a loss; see docs).  ``tests/contract/test_global_order.py`` proves it.

Events held past a hole (chain custody, DESIGN §4.2) are in ``held_events``, which
has no position or tx id and which no reader of the global order touches.  A held
event joins ``events`` only through an append that stores its predecessor, written
by that append's own COPY: it takes the promoting transaction's id, so it enters
the global order exactly like the events committed with it, and the argument above
holds unchanged.

Concurrent appends to the same stream are serialized with transaction-scoped
advisory locks taken in a fixed order (so never a deadlock), which makes the
read-classify-write of ``plan_append`` (held events included) race-free without
locking whole tables.
"""

import hashlib
import time
from collections.abc import Collection, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar, Final

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

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
from services.eventstore.database_url import DatabaseUrl, unreachable
from services.eventstore.driver_errors import DriverErrors
from services.eventstore.errors import SchemaMissingError
from services.eventstore.migrations import SCHEMA_REVISION
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
    stream_family,
    wakes,
)

_EVENT_COLUMNS: Final = sql.SQL(
    "tx_id::text::bigint, position, stream_id, device_id, seq, event_id, type, occurred_at, "
    "received_at, hash, prev_hash, body"
)
_READ_AFTER: Final = sql.SQL(
    "SELECT {columns} FROM events "
    "WHERE (tx_id, position) > (%s::text::xid8, %s) "
    "AND tx_id < pg_snapshot_xmin(pg_current_snapshot()) "
    # Qualified: the output column "tx_id" (the cast below) would otherwise be the sort
    # key, and PostgreSQL would sort every later row instead of walking the index.
    "ORDER BY events.tx_id, events.position LIMIT %s"
).format(columns=_EVENT_COLUMNS)
# ``_READ_AFTER``'s next rows, their keys, stream ids and types only; of them the
# matching events and the last one (where the reader's checkpoint moves) read whole,
# so no other event's body leaves the database.
_READ_MATCHING: Final = sql.SQL(
    "WITH scanned AS (SELECT tx_id, position, stream_id, type FROM events "
    "WHERE (tx_id, position) > (%s::text::xid8, %s) "
    "AND tx_id < pg_snapshot_xmin(pg_current_snapshot()) "
    "ORDER BY events.tx_id, events.position LIMIT %s) "
    "SELECT {columns} FROM events WHERE (events.tx_id, events.position) IN ("
    "SELECT s.tx_id, s.position FROM scanned s WHERE (substr(s.stream_id, 1, %s) = %s "
    "AND (%s::text[] IS NULL OR s.type = ANY(%s::text[]))) "
    "OR (s.tx_id, s.position) = "
    "(SELECT l.tx_id, l.position FROM scanned l ORDER BY l.tx_id DESC, l.position DESC LIMIT 1)) "
    "ORDER BY events.tx_id, events.position"
).format(columns=_EVENT_COLUMNS)
_READ_RECORDS: Final = (
    "SELECT tx_id::text::bigint, position, stream_id, device_id, seq, type, received_at, "
    "hash, body FROM events "
    "WHERE (tx_id, position) > (%s::text::xid8, %s) "
    "AND tx_id < pg_snapshot_xmin(pg_current_snapshot()) "
    "ORDER BY events.tx_id, events.position LIMIT %s"
)
_READ_STREAM: Final = sql.SQL(
    "SELECT {columns} FROM events WHERE stream_id = %s AND seq BETWEEN %s AND %s "
    "ORDER BY seq LIMIT %s"
).format(columns=_EVENT_COLUMNS)
_READ_HEADS: Final = sql.SQL(
    "SELECT head.* FROM unnest(%s::text[]) AS wanted(stream_id) CROSS JOIN LATERAL ("
    "SELECT {columns} FROM events WHERE events.stream_id = wanted.stream_id "
    "ORDER BY seq DESC LIMIT 1) AS head"
).format(columns=_EVENT_COLUMNS)
_LOCK_STREAMS: Final = (
    "SELECT pg_advisory_xact_lock(k) "
    "FROM unnest(%s::bigint[]) WITH ORDINALITY AS t(k, n) ORDER BY n"
)
_NEIGHBOURS: Final = (
    "SELECT e.stream_id, e.seq, e.hash, e.prev_hash "
    "FROM unnest(%s::text[], %s::bigint[], %s::bigint[]) AS r(stream_id, first_seq, last_seq) "
    "JOIN events e ON e.stream_id = r.stream_id AND e.seq BETWEEN r.first_seq AND r.last_seq"
)
_CUSTODY: Final = CUSTODY.format(wanted="SELECT * FROM unnest(%s::text[], %s::bigint[])")
_ROW_COLUMNS: Final = (
    "stream_id, device_id, seq, event_id, type, occurred_at, received_at, hash, prev_hash, body"
)
_COPY_EVENTS: Final = f"COPY events ({_ROW_COLUMNS}) FROM STDIN (FORMAT BINARY)"
_COPY_HELD: Final = f"COPY held_events ({_ROW_COLUMNS}) FROM STDIN (FORMAT BINARY)"
_DELETE_HELD: Final = (
    "DELETE FROM held_events h "
    "USING unnest(%s::text[], %s::bigint[], %s::text[]) AS r(stream_id, seq, hash) "
    "WHERE h.stream_id = r.stream_id AND h.seq = r.seq AND h.hash = r.hash"
)
EVENT_COPY_TYPES: Final = [
    "text", "text", "int8", "uuid", "text", "timestamptz", "timestamptz", "text", "text", "bytea",
]  # fmt: skip
_INSERT_SEAL: Final = (
    "INSERT INTO seals (stream_id, seq, key_id, sig, stored_at) VALUES (%s, %s, %s, %s, %s) "
    "ON CONFLICT (stream_id, seq) DO NOTHING"
)
_INSERT_DEAD_LETTER: Final = (
    "INSERT INTO dead_letters (received_at, topic, reason, detail, device_id, seq, raw, raw_size) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
)
_COPY_HEARTBEATS: Final = (
    "COPY heartbeats (device_id, sampled_at, received_at, battery_pct, temperature_c, uptime_s, "
    "rssi_dbm) FROM STDIN (FORMAT BINARY)"
)
_HEARTBEAT_TYPES: Final = [
    "text",
    "timestamptz",
    "timestamptz",
    "float8",
    "float8",
    "int8",
    "float8",
]
_RECORD_PRESENCE: Final = (
    "INSERT INTO presence AS stored (device_id, online, changed_at) VALUES (%s, %s, %s) "
    "ON CONFLICT (device_id) DO UPDATE "
    "SET online = excluded.online, changed_at = excluded.changed_at "
    "WHERE excluded.changed_at >= stored.changed_at"
)
_NO_LIMIT: Final = 2**62
POSTGRES_ERRORS: Final = DriverErrors(
    refused=(psycopg.DataError, psycopg.IntegrityError), failed=psycopg.Error
)
"""How psycopg's exceptions become the store's own."""
APPENDS_CHANNEL: Final = "coreline_appends"
_NOTIFY_APPENDS: Final = (
    "SELECT pg_notify(%s, family || ' ' || pg_current_xact_id()::text) "
    "FROM unnest(%s::text[]) AS family"
)
_HORIZON: Final = "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint"
_AWAITED_POLL_S: Final = 0.05
"""How often a reader awaiting an alert out of sight looks at the horizon again."""


class PostgresEventStore(PortableQueries):
    """The event store in PostgreSQL (or TimescaleDB).  One connection; one thread."""

    PARAMETERS: ClassVar[dict[str, str]] = {
        "stream": "%(stream_id)s",
        "after": "%(after_seq)s::bigint",
    }

    # The shared queries reach the database too: they fail like every other method.
    find_gaps = POSTGRES_ERRORS(PortableQueries.find_gaps)
    contiguous_through = POSTGRES_ERRORS(PortableQueries.contiguous_through)
    head = POSTGRES_ERRORS(PortableQueries.head)
    count_events = POSTGRES_ERRORS(PortableQueries.count_events)
    stream_ids = POSTGRES_ERRORS(PortableQueries.stream_ids)

    @POSTGRES_ERRORS
    def __init__(self, conninfo: str) -> None:
        self._conninfo = conninfo
        self._reach = make_conninfo(conninfo, **DatabaseUrl.parse(conninfo).connection_defaults)
        self._listener: psycopg.Connection[Any] | None = None
        self._awaited = 0
        """The newest transaction that appended to a filtered reader's streams and was
        not in its sight yet (0: none; ``wait_for_appends``)."""
        try:
            self._open = self._connect()
        except psycopg.OperationalError as error:
            raise unreachable(conninfo, error) from error
        self._check_schema()

    @property
    def _connection(self) -> psycopg.Connection[Any]:
        """The live connection: one that broke (its server died or was demoted) is
        replaced on the next call, through the URL, so after a failover the store
        follows the new primary by itself.  Never inside a transaction: a transaction
        takes the connection once, and a break fails it whole."""
        if self._open.broken:
            self._open.close()
            self._open = self._connect()
        return self._open

    @_connection.setter
    def _connection(self, connection: psycopg.Connection[Any]) -> None:
        self._open = connection

    def _connect(self) -> psycopg.Connection[Any]:
        # Autocommit: reads are single statements and never sit idle in a transaction
        # (which would hold back other readers' horizon); writes open one explicitly.
        return psycopg.connect(self._reach, autocommit=True)

    @POSTGRES_ERRORS
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
        with self._connection.transaction(), self._connection.cursor() as cursor:
            return self._append_in(cursor, events, dead_letters, received, seals)

    @POSTGRES_ERRORS
    def append_next(
        self, stream_id: str, build: NextEvent, *, received_at: datetime | None = None
    ) -> SealedEvent | None:
        # The stream's lock, held to COMMIT, is what every append of the stream takes.
        _, (built,) = self.append_with_next((), [(stream_id, build)], received_at=received_at)
        return built

    @POSTGRES_ERRORS
    def append_with_next(
        self,
        events: Sequence[SealedEvent],
        nexts: Sequence[tuple[str, NextEvent]],
        *,
        received_at: datetime | None = None,
    ) -> tuple[AppendResult, list[SealedEvent | None]]:
        received = received_at or datetime.now(UTC)
        with self._connection.transaction(), self._connection.cursor() as cursor:
            if nexts:
                # Every stream's lock at once, in the order every append takes them,
                # so two such calls never wait for each other in a cycle.
                streams = {event.stream_id for event in events} | {s for s, _ in nexts}
                cursor.execute(_LOCK_STREAMS, (sorted(_lock_key(s) for s in streams),))
            result = (
                self._append_in(cursor, events, (), received) if events else AppendResult.empty()
            )
            built: list[SealedEvent | None] = []
            for turn in _turns(nexts):
                # One read for the heads of a turn's streams, each named once in it: a
                # stream named again waits for the next turn, after this one's append.
                cursor.execute(_READ_HEADS, ([stream_id for stream_id, _ in turn],))
                heads = {head.stream_id: head for head in map(_stored_event, cursor.fetchall())}
                made = [next_events(build(heads.get(stream_id))) for stream_id, build in turn]
                built.extend(events_made[-1] if events_made else None for events_made in made)
                joined = [event for events_made in made for event in events_made]
                if joined:
                    self._append_in(cursor, joined, (), received)
            return result, built

    def _append_in(
        self,
        cursor: psycopg.Cursor[Any],
        events: Sequence[SealedEvent],
        dead_letters: Sequence[DeadLetter],
        received: datetime,
        seals: Sequence[StreamSeal] = (),
    ) -> AppendResult:
        neighbours = self._lock_and_fetch_neighbours(cursor, events)
        custody = self._custody(cursor, events)
        neighbours |= custody.successors
        plan = plan_append(
            events, neighbours, received_at=received, heads=custody.heads, held=custody.held
        )
        if plan.joins:
            # Promoted rows too: this COPY gives them this transaction's id (see above).
            _copy_rows(cursor, _COPY_EVENTS, plan.joins)
            # Delivered at commit, to every LISTENing reader, one a kind of stream
            # (``stream_family``): a reader of alert streams sleeps through devices'.
            families = sorted({stream_family(row.stream_id) for row in plan.joins})
            cursor.execute(_NOTIFY_APPENDS, (APPENDS_CHANNEL, families))
        if plan.released:
            cursor.execute(
                _DELETE_HELD,
                (
                    [row.stream_id for row in plan.released],
                    [row.seq for row in plan.released],
                    [row.hash for row in plan.released],
                ),
            )
        if plan.holds:
            _copy_rows(cursor, _COPY_HELD, plan.holds)
        letters = [*dead_letters, *plan.rejected]
        if letters:
            cursor.executemany(
                _INSERT_DEAD_LETTER, [_dead_letter_row(letter, received) for letter in letters]
            )
        # Under the stream locks taken above, so the event each seal signs stays as
        # ``seals_to_store`` saw it until COMMIT.
        kept = seals_to_store(seals, neighbours, plan, custody.held)
        if kept:
            cursor.executemany(
                _INSERT_SEAL, [(s.stream_id, s.seq, s.key_id, s.sig, received) for s in kept]
            )
        return plan.result()

    @POSTGRES_ERRORS
    def read_seals(self, stream_id: str, from_seq: int = 1, limit: int = 0) -> list[StoredSeal]:
        rows = self._connection.execute(
            "SELECT stream_id, seq, key_id, sig, stored_at FROM seals "
            "WHERE stream_id = %s AND seq >= %s ORDER BY seq LIMIT %s",
            (stream_id, from_seq, limit or None),
        ).fetchall()
        return [StoredSeal(*row) for row in rows]

    @POSTGRES_ERRORS
    def read(self, after: Cursor, limit: int = 1000) -> list[StoredEvent]:
        # fetchall: psycopg builds every row in one call; iterating costs ~5 µs a row.
        rows = self._connection.execute(
            _READ_AFTER, (str(after.commit), after.position, limit), binary=True
        ).fetchall()
        return [_stored_event(row) for row in rows]

    @POSTGRES_ERRORS
    def read_matching(
        self,
        after: Cursor,
        limit: int = 1000,
        *,
        stream_prefix: str = "",
        types: Collection[str] | None = None,
    ) -> tuple[list[StoredEvent], Cursor]:
        wanted = None if types is None else sorted(types)
        rows = self._connection.execute(
            _READ_MATCHING,
            (str(after.commit), after.position, limit, len(stream_prefix), stream_prefix,
             wanted, wanted),
            binary=True,
        ).fetchall()  # fmt: skip
        return matching_read([_stored_event(row) for row in rows], after, stream_prefix, types)

    @POSTGRES_ERRORS
    def read_records(self, after: Cursor, limit: int = 10_000) -> list[EventRecord]:
        rows = self._connection.execute(
            _READ_RECORDS, (str(after.commit), after.position, limit), binary=True
        ).fetchall()
        return [
            EventRecord(Cursor(row[0], row[1]), row[2], row[3], row[4], row[5], row[6], row[7],
                        bytes(row[8]))
            for row in rows
        ]  # fmt: skip

    @POSTGRES_ERRORS
    def read_stream(
        self, stream_id: str, from_seq: int = 1, to_seq: int | None = None, limit: int | None = None
    ) -> list[StoredEvent]:
        rows = self._connection.execute(
            _READ_STREAM,
            (stream_id, from_seq, _NO_LIMIT if to_seq is None else to_seq, limit or _NO_LIMIT),
        )
        return [_stored_event(row) for row in rows]

    @POSTGRES_ERRORS
    def dead_letters(self, after_id: int = 0, limit: int = 100) -> list[StoredDeadLetter]:
        rows = self._connection.execute(
            "SELECT id, received_at, topic, reason, detail, device_id, seq, raw, raw_size "
            "FROM dead_letters WHERE id > %s ORDER BY id LIMIT %s",
            (after_id, limit),
        )
        return [
            StoredDeadLetter(
                id=row[0],
                received_at=row[1],
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

    @POSTGRES_ERRORS
    def record_heartbeats(
        self, heartbeats: Sequence[Heartbeat], *, received_at: datetime | None = None
    ) -> None:
        received = received_at or datetime.now(UTC)
        with (
            self._connection.transaction(),
            self._connection.cursor() as cursor,
            cursor.copy(_COPY_HEARTBEATS) as copy,
        ):
            copy.set_types(_HEARTBEAT_TYPES)
            for beat in heartbeats:
                copy.write_row(
                    (
                        beat.device_id,
                        beat.sampled_at,
                        received,
                        beat.battery_pct,
                        beat.temperature_c,
                        beat.uptime_s,
                        beat.rssi_dbm,
                    )
                )

    @POSTGRES_ERRORS
    def latest_heartbeats(self, device_id: str, limit: int = 100) -> list[Heartbeat]:
        rows = self._connection.execute(
            "SELECT sampled_at, battery_pct, temperature_c, uptime_s, rssi_dbm FROM heartbeats "
            "WHERE device_id = %s ORDER BY sampled_at DESC LIMIT %s",
            (device_id, limit),
        )
        return [
            Heartbeat.model_construct(
                device_id=device_id,
                sampled_at=row[0],
                battery_pct=row[1],
                temperature_c=row[2],
                uptime_s=row[3],
                rssi_dbm=row[4],
            )
            for row in rows
        ]

    @POSTGRES_ERRORS
    def newest_heartbeats(self, device_ids: Sequence[str]) -> dict[str, Heartbeat]:
        # LATERAL ... LIMIT 1: each device's newest row is one index probe
        # (device_id, sampled_at DESC), however long its history.
        rows = self._connection.execute(
            "SELECT asked.device_id, h.sampled_at, h.battery_pct, h.temperature_c, "
            "h.uptime_s, h.rssi_dbm FROM unnest(%s::text[]) AS asked(device_id) "
            "CROSS JOIN LATERAL (SELECT sampled_at, battery_pct, temperature_c, uptime_s, "
            "rssi_dbm FROM heartbeats WHERE heartbeats.device_id = asked.device_id "
            "ORDER BY sampled_at DESC LIMIT 1) AS h",
            (list(dict.fromkeys(device_ids)),),
        )
        return {
            row[0]: Heartbeat.model_construct(
                device_id=row[0],
                sampled_at=row[1],
                battery_pct=row[2],
                temperature_c=row[3],
                uptime_s=row[4],
                rssi_dbm=row[5],
            )
            for row in rows
        }

    @POSTGRES_ERRORS
    def record_presence(self, device_id: str, online: bool, at: datetime) -> None:
        # ON CONFLICT locks the stored row and checks the WHERE against its latest
        # version, so two gateways racing still leave the newer status behind.
        self._connection.execute(_RECORD_PRESENCE, (device_id, online, at))

    @POSTGRES_ERRORS
    def presence(self, device_ids: Sequence[str] | None = None) -> dict[str, Presence]:
        if device_ids is None:
            rows = self._connection.execute(
                "SELECT device_id, online, changed_at FROM presence ORDER BY device_id"
            )
        else:
            rows = self._connection.execute(
                "SELECT device_id, online, changed_at FROM presence "
                "WHERE device_id = ANY(%s::text[]) ORDER BY device_id",
                (list(device_ids),),
            )
        return {row[0]: Presence(row[1], row[2]) for row in rows}

    @POSTGRES_ERRORS
    def wait_for_appends(self, timeout: float, *, stream_prefix: str = "") -> None:
        if self._listener is not None and self._listener.broken:
            # A failover ended the LISTEN with the old primary's connection; the new
            # primary's notifications need a LISTEN of their own (below).
            self._listener.close()
            self._listener = None
        if self._listener is None:
            listener = self._connect()
            try:
                listener.execute(f"LISTEN {APPENDS_CHANNEL}")
            except psycopg.Error:
                listener.close()
                raise
            self._listener = listener
            self._awaited = 0  # the read that follows sees whatever it was
            return  # appends before LISTEN would be missed: let the caller read first
        listener = self._listener
        if self._woken(listener, [], stream_prefix):
            return  # what the last wait awaited came in sight meanwhile
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            # While an alert waits behind an older transaction, the horizon is looked
            # at again every little while: that transaction may end without a
            # notification (rolled back, or it appended nothing).
            poll = min(remaining, _AWAITED_POLL_S) if self._awaited else remaining
            notes = listener.notifies(timeout=poll, stop_after=1)
            if self._woken(listener, [note.payload for note in notes], stream_prefix):
                break
        # Several appends may have notified meanwhile: one read catches up with all.
        self._woken(
            listener, [note.payload for note in listener.notifies(timeout=0)], stream_prefix
        )

    def _woken(
        self, listener: psycopg.Connection[Any], payloads: list[str], stream_prefix: str
    ) -> bool:
        """Whether these notifications wake a reader of the streams under
        ``stream_prefix``.  A reader of all streams wakes at any.  A reader of some
        wakes once an append to them is in sight: a read sees an append only when
        every older transaction has ended (the order never skips), so one committed
        behind a device's append still in flight is awaited until a later
        notification finds it in sight."""
        if not stream_prefix:
            return bool(payloads)
        for payload in payloads:
            family, _, transaction = payload.rpartition(" ")
            if not transaction.isdigit():
                return True  # a notification that does not say (an older writer's)
            if wakes(family, stream_prefix):
                self._awaited = max(self._awaited, int(transaction))
        if not self._awaited:
            return False
        row = listener.execute(_HORIZON).fetchone()  # the oldest a read cannot see yet
        if row is None or self._awaited >= int(row[0]):
            return False
        self._awaited = 0
        return True

    @POSTGRES_ERRORS
    def close(self) -> None:
        self._open.close()
        if self._listener is not None:
            self._listener.close()

    def _check_schema(self) -> None:
        row = self._connection.execute(
            "SELECT to_regclass('alembic_version') IS NOT NULL"
        ).fetchone()
        revision = None
        if row and row[0]:
            found = self._connection.execute("SELECT version_num FROM alembic_version").fetchone()
            revision = found[0] if found else None
        if revision != SCHEMA_REVISION:
            self._open.close()
            raise SchemaMissingError(
                f"the PostgreSQL database is at schema revision {revision or 'none'}, "
                f"this Coreline needs {SCHEMA_REVISION}: run `coreline db upgrade`"
            )

    @staticmethod
    def _custody(cursor: psycopg.Cursor[Any], events: Sequence[SealedEvent]) -> Custody:
        if not events:
            return Custody()
        first = custody_from(events)
        cursor.execute(_CUSTODY, (list(first), list(first.values())))
        return Custody.of_rows(cursor.fetchall(), _held_row)

    @staticmethod
    def _lock_and_fetch_neighbours(
        cursor: psycopg.Cursor[Any], events: Sequence[SealedEvent]
    ) -> dict[StreamKey, StoredLink]:
        if not events:
            return {}
        streams = {event.stream_id for event in events}
        cursor.execute(_LOCK_STREAMS, (sorted(_lock_key(stream) for stream in streams),))
        ranges = neighbour_ranges(events)
        cursor.execute(
            _NEIGHBOURS,
            (
                [seq_range.stream_id for seq_range in ranges],
                [seq_range.first for seq_range in ranges],
                [seq_range.last for seq_range in ranges],
            ),
        )
        return {(row[0], row[1]): StoredLink(row[2], row[3]) for row in cursor}


def _copy_rows(cursor: psycopg.Cursor[Any], statement: str, rows: Sequence[EventRow]) -> None:
    with cursor.copy(statement) as copy:
        copy.set_types(EVENT_COPY_TYPES)
        for row in rows:
            copy.write_row(
                (
                    row.stream_id,
                    row.device_id,
                    row.seq,
                    row.event_id,
                    row.type,
                    row.occurred_at,
                    row.received_at,
                    row.hash,
                    row.prev_hash,
                    row.body,
                )
            )


def _held_row(row: tuple[Any, ...]) -> EventRow:
    stream_id, seq, hash_, prev_hash, device_id, event_id, type_, occurred, received, body = row
    return EventRow(
        stream_id=stream_id,
        device_id=device_id,
        seq=seq,
        event_id=event_id,
        type=type_,
        occurred_at=occurred,
        received_at=received,
        hash=hash_,
        prev_hash=prev_hash,
        body=bytes(body),
    )


def _turns(nexts: Sequence[tuple[str, NextEvent]]) -> list[list[tuple[str, NextEvent]]]:
    """``nexts`` in order, cut where a stream comes again (its head is then what the
    turn before appended)."""
    turns: list[list[tuple[str, NextEvent]]] = []
    named: set[str] = set()
    for stream_id, build in nexts:
        if not turns or stream_id in named:
            turns.append([])
            named = set()
        turns[-1].append((stream_id, build))
        named.add(stream_id)
    return turns


def _lock_key(stream_id: str) -> int:
    """A stable 64-bit advisory-lock key per stream (a collision only serializes more)."""
    digest = hashlib.blake2b(stream_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _stored_event(row: tuple[Any, ...]) -> StoredEvent:
    commit, position, stream_id, device_id, seq, event_id, type_, occurred, received = row[:9]
    return StoredEvent(
        cursor=Cursor(commit, position),
        stream_id=stream_id,
        device_id=device_id,
        seq=seq,
        event_id=event_id,
        type=type_,
        occurred_at=occurred,
        received_at=received,
        hash=row[9],
        prev_hash=row[10],
        body=bytes(row[11]),
    )


def _dead_letter_row(letter: DeadLetter, received: datetime) -> tuple[object, ...]:
    rejection = letter.rejection
    return (
        received,
        letter.topic,
        rejection.reason.value,
        rejection.detail,
        rejection.device_id,
        rejection.seq,
        rejection.raw[:DEAD_LETTER_RAW_LIMIT],
        len(rejection.raw),
    )
