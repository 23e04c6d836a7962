"""The agent's durable outbox (SQLite, WAL).

An event gets its ``seq``, ``prev_hash`` and ``hash`` in the same transaction that
stores it and moves the device's chain head, so whatever instant power fails or the
process is killed, the file holds a chain that is whole up to its head: an event
either exists with its place in the chain or never existed.

Sent events are kept for ``resend_window`` to answer resend commands, then pruned.
The disk budget never costs an unsent event: when only unsent events are left and
the budget is still exceeded, the outbox records an ``E-OUTBOX-FULL`` fault event
(so the fleet team sees it) and keeps every event it is handed.
"""

import sqlite3
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Final

from pydantic import ValidationError

from edge_agent.device import DeviceReading
from schemas import DEVICE_EVENT_TYPES, GENESIS_HASH, SealedEvent, describe, seal, utc_text

OUTBOX_FULL_FAULT: Final = "E-OUTBOX-FULL"

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS chain_heads (
    device_id  TEXT PRIMARY KEY,
    last_seq   INTEGER NOT NULL,
    last_hash  TEXT    NOT NULL
);
CREATE TABLE IF NOT EXISTS outbox (
    device_id   TEXT    NOT NULL,
    seq         INTEGER NOT NULL,
    wire        BLOB    NOT NULL,
    recorded_at TEXT    NOT NULL,
    sent_at     TEXT,
    PRIMARY KEY (device_id, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS outbox_unsent ON outbox (device_id, seq) WHERE sent_at IS NULL;
CREATE INDEX IF NOT EXISTS outbox_sent ON outbox (sent_at) WHERE sent_at IS NOT NULL;
"""


class Durability(StrEnum):
    FULL = "full"
    """fsync at every commit: a reported event survives power loss."""
    NORMAL = "normal"
    """WAL default: survives a crashed process; power loss may undo the last commits
    (the chain stays whole, it just ends earlier)."""


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    device_id: str
    seq: int
    wire: bytes
    """The event exactly as it goes on the wire, identical on every resend."""


@dataclass(frozen=True, slots=True)
class OutboxStats:
    unsent: int
    stored: int
    used_bytes: int


class Outbox:
    """One SQLite file of outgoing events for one device or a simulated fleet.

    One instance per thread; several processes may share the file (SQLite locks).
    """

    def __init__(
        self,
        path: Path,
        *,
        durability: Durability = Durability.FULL,
        resend_window: timedelta = timedelta(days=7),
        budget_bytes: int = 256 * 1024 * 1024,
        event_ids: Callable[[], uuid.UUID] = uuid.uuid4,
    ) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._connection = sqlite3.connect(
            path, isolation_level=None, check_same_thread=False, timeout=30
        )
        self._connection.execute("PRAGMA journal_mode = WAL")
        self._connection.execute(f"PRAGMA synchronous = {durability.value.upper()}")
        self._connection.executescript(_SCHEMA)
        self._durability = durability
        self._resend_window = resend_window
        self._budget_bytes = budget_bytes
        self._event_ids = event_ids
        self._over_budget: set[str] = set()

    def record(self, device_id: str, reading: DeviceReading) -> SealedEvent:
        """Seal ``reading`` as the device's next event and store it durably."""
        (sealed,) = self.record_many(device_id, [reading])
        return sealed

    def record_many(self, device_id: str, readings: Sequence[DeviceReading]) -> list[SealedEvent]:
        """Seal and store several readings of one device in one transaction (one fsync)."""
        return self.record_fleet({device_id: readings})[device_id]

    def record_fleet(
        self, readings: Mapping[str, Sequence[DeviceReading]]
    ) -> dict[str, list[SealedEvent]]:
        """Seal and store the readings of many devices in one transaction: one fsync
        for a whole simulated fleet's tick instead of one per device."""
        now = utc_text(datetime.now(UTC))
        sealed_by_device: dict[str, list[SealedEvent]] = {}
        with self._transaction() as connection:
            for device_id, device_readings in readings.items():
                sealed_by_device[device_id] = sealed = self._seal_chain(
                    connection, device_id, device_readings
                )
                if not sealed:
                    continue
                connection.executemany(
                    "INSERT INTO outbox (device_id, seq, wire, recorded_at) VALUES (?, ?, ?, ?)",
                    [(device_id, event.seq, wire_bytes(event), now) for event in sealed],
                )
                connection.execute(
                    "INSERT INTO chain_heads (device_id, last_seq, last_hash) VALUES (?, ?, ?) "
                    "ON CONFLICT (device_id) DO UPDATE SET last_seq = excluded.last_seq, "
                    "last_hash = excluded.last_hash",
                    (device_id, sealed[-1].seq, sealed[-1].hash),
                )
        return sealed_by_device

    def head(self, device_id: str) -> tuple[int, str]:
        """The device's last seq and hash (0 and 64 zeros before its first event)."""
        row = self._connection.execute(
            "SELECT last_seq, last_hash FROM chain_heads WHERE device_id = ?", (device_id,)
        ).fetchone()
        return (row[0], row[1]) if row else (0, GENESIS_HASH)

    def unsent(
        self,
        device_id: str,
        *,
        after_seq: int = 0,
        max_events: int = 500,
        max_bytes: int | None = None,
    ) -> list[OutboxEntry]:
        """Unsent events after ``after_seq`` in seq order, at most ``max_events`` and,
        when given, at most ``max_bytes`` of wire bytes (but always at least one)."""
        rows = self._connection.execute(
            "SELECT seq, wire FROM outbox WHERE device_id = ? AND sent_at IS NULL AND seq > ? "
            "ORDER BY seq LIMIT ?",
            (device_id, after_seq, max_events),
        ).fetchall()
        return _within_bytes([OutboxEntry(device_id, seq, wire) for seq, wire in rows], max_bytes)

    def first_unsent_seq(self, device_id: str) -> int | None:
        row = self._connection.execute(
            "SELECT min(seq) FROM outbox WHERE device_id = ? AND sent_at IS NULL", (device_id,)
        ).fetchone()
        return row[0] if row else None

    def mark_sent(self, device_id: str, first_seq: int, last_seq: int) -> None:
        """The broker acknowledged these events (PUBACK): keep them only for resends.

        Committed without its own fsync: if power takes this mark away, the events
        are simply published once more (identical bytes, deduplicated upstream); the
        next recorded event's fsync makes it durable anyway."""
        self._connection.execute("PRAGMA synchronous = NORMAL")
        try:
            with self._transaction() as connection:
                connection.execute(
                    "UPDATE outbox SET sent_at = ? WHERE device_id = ? AND seq BETWEEN ? AND ? "
                    "AND sent_at IS NULL",
                    (utc_text(datetime.now(UTC)), device_id, first_seq, last_seq),
                )
        finally:
            self._connection.execute(f"PRAGMA synchronous = {self._durability.value.upper()}")

    def between(self, device_id: str, from_seq: int, to_seq: int) -> list[OutboxEntry]:
        """Stored events in a seq range, sent or not, for answering a resend command."""
        rows = self._connection.execute(
            "SELECT seq, wire FROM outbox WHERE device_id = ? AND seq BETWEEN ? AND ? ORDER BY seq",
            (device_id, from_seq, to_seq),
        ).fetchall()
        return [OutboxEntry(device_id, seq, wire) for seq, wire in rows]

    def stats(self) -> OutboxStats:
        unsent, stored = self._connection.execute(
            "SELECT count(*) FILTER (WHERE sent_at IS NULL), count(*) FROM outbox"
        ).fetchone()
        return OutboxStats(unsent=unsent, stored=stored, used_bytes=self._used_bytes())

    def enforce_limits(self, device_ids: Iterable[str], now: datetime | None = None) -> None:
        """Prune sent events past the resend window; over budget, prune older sent
        events too; if unsent events alone exceed it, raise a fault event once."""
        moment = now or datetime.now(UTC)
        with self._transaction() as connection:
            connection.execute(
                "DELETE FROM outbox WHERE sent_at IS NOT NULL AND sent_at < ?",
                (utc_text(moment - self._resend_window),),
            )
            while self._used_bytes() > self._budget_bytes:
                deleted = connection.execute(
                    "DELETE FROM outbox WHERE (device_id, seq) IN (SELECT device_id, seq "
                    "FROM outbox WHERE sent_at IS NOT NULL ORDER BY sent_at LIMIT 1000)"
                ).rowcount
                if deleted == 0:
                    break
        for device_id in device_ids:
            self._report_budget(device_id, moment)

    def close(self) -> None:
        self._connection.close()

    def _report_budget(self, device_id: str, moment: datetime) -> None:
        over = self._used_bytes() > self._budget_bytes
        if over and device_id not in self._over_budget:
            self._over_budget.add(device_id)
            self.record(device_id, _outbox_fault("fault.raised", moment, self._budget_bytes))
        elif not over and device_id in self._over_budget:
            self._over_budget.discard(device_id)
            self.record(device_id, _outbox_fault("fault.cleared", moment, self._budget_bytes))

    def _seal_chain(
        self, connection: sqlite3.Connection, device_id: str, readings: Sequence[DeviceReading]
    ) -> list[SealedEvent]:
        row = connection.execute(
            "SELECT last_seq, last_hash FROM chain_heads WHERE device_id = ?", (device_id,)
        ).fetchone()
        last_seq, last_hash = row if row else (0, GENESIS_HASH)
        sealed_events = []
        for reading in readings:
            sealed = self._seal(device_id, last_seq + 1, last_hash, reading)
            sealed_events.append(sealed)
            last_seq, last_hash = sealed.seq, sealed.hash
        return sealed_events

    def _seal(
        self, device_id: str, seq: int, prev_hash: str, reading: DeviceReading
    ) -> SealedEvent:
        """Seal (which validates against the wire schema) or refuse the reading."""
        if reading.type not in DEVICE_EVENT_TYPES:
            raise InvalidReadingError(f"{reading.type!r} is not an event a device may send")
        try:
            return self._seal_valid(device_id, seq, prev_hash, reading)
        except ValidationError as error:
            # The union's tag (the event type) leads the location: the message names it.
            where = describe(error, skip=1)
            raise InvalidReadingError(f"{reading.type} (would be seq {seq}): {where}") from None

    def _seal_valid(
        self, device_id: str, seq: int, prev_hash: str, reading: DeviceReading
    ) -> SealedEvent:
        return seal(
            {
                "event_id": str(self._event_ids()),
                "device_id": device_id,
                "seq": seq,
                "type": reading.type,
                "occurred_at": utc_text(reading.occurred_at),
                "schema_version": 1,
                "data": dict(reading.data),
                "prev_hash": prev_hash,
            }
        )

    def _used_bytes(self) -> int:
        pages = self._connection.execute("PRAGMA page_count").fetchone()[0]
        free = self._connection.execute("PRAGMA freelist_count").fetchone()[0]
        size = self._connection.execute("PRAGMA page_size").fetchone()[0]
        return int((pages - free) * size)

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self._connection.execute("BEGIN IMMEDIATE")
        try:
            yield self._connection
        except BaseException:
            self._connection.execute("ROLLBACK")
            raise
        self._connection.execute("COMMIT")


class InvalidReadingError(ValueError):
    """Firmware handed over an event the platform would refuse.  Nothing of the
    transaction is stored: once sealed into the chain, a bad event could never be
    taken back, and every later event of the device would sit behind it."""


def wire_bytes(event: SealedEvent) -> bytes:
    """The event's wire JSON: its canonical body with ``hash`` appended as the last
    member (member order does not matter on the wire; the gateway re-canonicalizes)."""
    return event.body[:-1] + b',"hash":"' + event.hash.encode() + b'"}'


def _outbox_fault(kind: str, moment: datetime, budget_bytes: int) -> DeviceReading:
    data: dict[str, object] = {"fault_code": OUTBOX_FULL_FAULT}
    if kind == "fault.raised":
        data |= {
            "severity": "warning",
            "message": f"outbox holds more unsent events than its {budget_bytes}-byte budget; "
            "nothing is dropped, but the device has been offline for long",
        }
    return DeviceReading(type=kind, occurred_at=moment, data=data)


def _within_bytes(entries: list[OutboxEntry], max_bytes: int | None) -> list[OutboxEntry]:
    if max_bytes is None:
        return entries
    kept: list[OutboxEntry] = []
    total = 0
    for entry in entries:
        total += len(entry.wire) + 1
        if kept and total > max_bytes:
            break
        kept.append(entry)
    return kept
