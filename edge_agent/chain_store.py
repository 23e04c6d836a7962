"""The device's chain inside an outbox transaction: sealing readings onto the head,
storing them, and the writes a platform ack calls for (DESIGN §4.2).

Every function here takes the connection of a transaction the ``Outbox`` holds, so
a seal, its row and the head it moves commit together or not at all.
"""

import sqlite3
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import orjson
from pydantic import ValidationError

from edge_agent.custody import CHAIN_MISMATCH_FAULT, DeliveryState, mismatch_message
from edge_agent.device import DeviceReading
from edge_agent.sealing import seal_reading
from schemas import (
    DEVICE_EVENT_TYPES,
    GENESIS_HASH,
    ResyncReason,
    SealedEvent,
    describe,
    seal,
    utc_text,
)


class ChainWriter:
    """Seals and stores one device's events at its chain head; ``event_ids`` gives
    each new event its identity."""

    def __init__(self, event_ids: Callable[[], uuid.UUID] = uuid.uuid4) -> None:
        self._event_ids = event_ids

    def append(
        self,
        connection: sqlite3.Connection,
        device_id: str,
        readings: Sequence[DeviceReading],
        recorded_at: str,
    ) -> list[SealedEvent]:
        sealed = self.seal_chain(connection, device_id, readings)
        if sealed:
            store(connection, device_id, [(event, recorded_at) for event in sealed])
        return sealed

    def rebase(
        self,
        connection: sqlite3.Connection,
        device_id: str,
        state: DeliveryState,
        platform_seq: int,
        platform_hash: str,
        moment: datetime,
    ) -> None:
        """Continue the platform's stream: ``agent.resynced`` at ``platform_seq + 1``
        linking to the platform's head, then every unacknowledged local event
        re-sealed after it (same event, new place; the platform never stored any of
        them, or its ack would have covered them)."""
        rows = connection.execute(
            "SELECT wire, recorded_at FROM outbox WHERE device_id = ? AND seq > ? ORDER BY seq",
            (device_id, state.acked_seq),
        ).fetchall()
        connection.execute(
            "DELETE FROM outbox WHERE device_id = ? AND seq > ?", (device_id, state.acked_seq)
        )
        resynced = self._seal(
            device_id,
            platform_seq + 1,
            platform_hash,
            DeviceReading(
                "agent.resynced",
                moment,
                {"from_seq": platform_seq, "reason": ResyncReason.STATE_LOST.value},
            ),
        )
        chain: list[tuple[SealedEvent, str]] = [(resynced, utc_text(moment))]
        for wire, recorded_at in rows:
            previous = chain[-1][0]
            chain.append((reseal(wire, previous.seq + 1, previous.hash), recorded_at))
        store(connection, device_id, chain)
        # The re-sealed events are new to the platform: sent only up to its head.
        connection.execute(
            "UPDATE chain_heads SET acked_seq = ?, sent_seq = ?, anchored = 1 WHERE device_id = ?",
            (platform_seq, platform_seq, device_id),
        )
        connection.execute(
            "DELETE FROM sent_marks WHERE device_id = ? AND through_seq > ?",
            (device_id, platform_seq),
        )

    def raise_mismatch(
        self,
        connection: sqlite3.Connection,
        device_id: str,
        ack: tuple[int, str, str | None],
        head_seq: int,
        moment: datetime,
    ) -> bool:
        """Record E-CHAIN-MISMATCH for this ack, unless this very ack already did."""
        seq, platform_hash, own = ack
        first_time = connection.execute(
            "INSERT OR IGNORE INTO ack_mismatches (device_id, seq, hash) VALUES (?, ?, ?)",
            (device_id, seq, platform_hash),
        ).rowcount
        if not first_time:
            return False
        data = {
            "fault_code": CHAIN_MISMATCH_FAULT,
            "severity": "critical",
            "message": mismatch_message(seq, platform_hash, own, head_seq),
        }
        reading = DeviceReading("fault.raised", moment, data)
        self.append(connection, device_id, [reading], utc_text(moment))
        return True

    def seal_chain(
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
        return seal_reading(device_id, seq, prev_hash, reading, self._event_ids())


class InvalidReadingError(ValueError):
    """Firmware handed over an event the platform would refuse.  Nothing of the
    transaction is stored: once sealed into the chain, a bad event could never be
    taken back, and every later event of the device would sit behind it."""


def wire_bytes(event: SealedEvent) -> bytes:
    """The event's wire JSON: its canonical body with ``hash`` appended as the last
    member (member order does not matter on the wire; the gateway re-canonicalizes)."""
    return event.body[:-1] + b',"hash":"' + event.hash.encode() + b'"}'


def delivery_state(connection: sqlite3.Connection, device_id: str) -> DeliveryState:
    row = connection.execute(
        "SELECT last_seq, last_hash, acked_seq, anchored FROM chain_heads WHERE device_id = ?",
        (device_id,),
    ).fetchone()
    if row is None:
        return DeliveryState(0, GENESIS_HASH, acked_seq=0, anchored=False)
    return DeliveryState(row[0], row[1], acked_seq=row[2], anchored=bool(row[3]))


def store(
    connection: sqlite3.Connection, device_id: str, chain: Sequence[tuple[SealedEvent, str]]
) -> None:
    """Insert consecutive sealed events (each with its ``recorded_at``) and move the
    head to the last of them."""
    connection.executemany(
        "INSERT INTO outbox (device_id, seq, wire, recorded_at) VALUES (?, ?, ?, ?)",
        [(device_id, event.seq, wire_bytes(event), recorded_at) for event, recorded_at in chain],
    )
    last = chain[-1][0]
    connection.execute(
        "INSERT INTO chain_heads (device_id, last_seq, last_hash) VALUES (?, ?, ?) "
        "ON CONFLICT (device_id) DO UPDATE SET last_seq = excluded.last_seq, "
        "last_hash = excluded.last_hash",
        (device_id, last.seq, last.hash),
    )


def own_hash(
    connection: sqlite3.Connection, device_id: str, state: DeliveryState, seq: int
) -> str | None:
    """The device's own hash at ``seq``, or ``None`` where the outbox no longer holds it."""
    if seq == 0:
        return GENESIS_HASH
    if seq == state.head_seq:
        return state.head_hash
    row = connection.execute(
        "SELECT wire FROM outbox WHERE device_id = ? AND seq = ?", (device_id, seq)
    ).fetchone()
    return str(orjson.loads(row[0])["hash"]) if row else None


def anchor_at_genesis(connection: sqlite3.Connection, device_id: str) -> None:
    connection.execute(
        "INSERT INTO chain_heads (device_id, last_seq, last_hash, anchored) "
        "VALUES (?, 0, ?, 1) ON CONFLICT (device_id) DO UPDATE SET anchored = 1",
        (device_id, GENESIS_HASH),
    )


def advance(connection: sqlite3.Connection, device_id: str, through: int, moment: datetime) -> None:
    # Covered events count as sent too, even where their PUBACK was lost with a
    # connection: the platform has them, so they must not go out again as new.
    connection.execute(
        "UPDATE chain_heads SET acked_seq = ?, anchored = 1 WHERE device_id = ?",
        (through, device_id),
    )
    mark_sent_through(connection, device_id, through, moment)


def mark_sent_through(
    connection: sqlite3.Connection, device_id: str, through: int, moment: datetime
) -> bool:
    """Move the device's sent watermark up to ``through`` (never down), noting when;
    whether it moved."""
    moved = connection.execute(
        "UPDATE chain_heads SET sent_seq = ? WHERE device_id = ? AND sent_seq < ?",
        (through, device_id, through),
    ).rowcount
    if moved:
        connection.execute(
            "INSERT OR REPLACE INTO sent_marks (device_id, through_seq, sent_at) VALUES (?, ?, ?)",
            (device_id, through, utc_text(moment)),
        )
    return bool(moved)


def reseal(wire: bytes, seq: int, prev_hash: str) -> SealedEvent:
    """The same event (id, type, time, data) in a new place of the chain."""
    event: dict[str, Any] = orjson.loads(wire)
    del event["hash"]
    return seal(event | {"seq": seq, "prev_hash": prev_hash})
