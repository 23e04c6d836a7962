"""The interlocks' state kept in the agent's outbox file, so a restart (a reboot, a
power cut) resumes the same decisions: a locked handpiece stays locked, a spent
cartridge stays spent.

The state is written in the transaction that records the events it accounts for
(``Outbox.record_noting``), with the seq it is good through; events recorded after
it by other paths (a configuration applied, a command answered) are replayed from
the outbox on restore.  Re-basing an unanchored chain on a device's first contact
with the platform moves seqs up: a snapshot taken before then is replayed from a
seq too low, and may count a punch twice, which errs on the side of the cartridge
being worn, never on the side of punching on.
"""

import sqlite3
from typing import Any

import orjson

from edge_agent.interlock_state import InterlockState
from edge_agent.interlocks import Interlocks
from edge_agent.outbox import Outbox
from schemas.device_config import DeviceSettings


def keep_state(connection: sqlite3.Connection, device_id: str, state: bytes) -> None:
    """Keep ``state`` as of the device's chain head in this transaction."""
    connection.execute(
        "INSERT INTO interlock_state (device_id, through_seq, state) "
        "SELECT ?, coalesce((SELECT last_seq FROM chain_heads WHERE device_id = ?), 0), ? "
        "ON CONFLICT (device_id) DO UPDATE SET through_seq = excluded.through_seq, "
        "state = excluded.state",
        (device_id, device_id, state),
    )


def _kept(connection: sqlite3.Connection, device_id: str) -> tuple[int, bytes] | None:
    row = connection.execute(
        "SELECT through_seq, state FROM interlock_state WHERE device_id = ?", (device_id,)
    ).fetchone()
    return None if row is None else (int(row[0]), bytes(row[1]))


def restore_interlocks(outbox: Outbox, device_id: str, settings: DeviceSettings) -> Interlocks:
    """The device's interlocks as they stood when it last recorded an event."""
    kept = outbox.read_state(lambda connection: _kept(connection, device_id))
    state, through = InterlockState(), 0
    if kept is not None:
        try:
            state, through = InterlockState.from_json(kept[1]), kept[0]
        except ValueError:
            state, through = InterlockState(), 0  # unreadable: refold what the outbox holds
    interlocks = Interlocks(settings, state=state)
    head = outbox.head(device_id)[0]
    for entry in outbox.between(device_id, through + 1, head):
        event: dict[str, Any] = orjson.loads(entry.wire)
        interlocks.observe(event["type"], event["data"])
    return interlocks
