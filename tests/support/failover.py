"""What a failover drill counts and measures: the devices' own outboxes against the
store, ingest pauses from the receive times the gateways stored, and the read models
and the transparency log against the store they were built from.

Every function here opens its own connections and tolerates none of the database's
errors, except the ``*_or_none`` pollers, which answer ``None`` while the database is
away (a drill polls straight through a failover)."""

import itertools
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import orjson
import psycopg
from sqlalchemy import select

from edge_agent.outbox import Outbox
from services.eventstore import Cursor, open_event_store
from services.merkle_log import MerkleLog
from services.projections.read_store import ReadModelStore
from services.projector import PROJECTOR

Chains = dict[str, dict[int, str]]
"""Per device, seq → hash."""
ReadModels = dict[str, list[tuple[str, ...]]]
"""Per read-model table, its rows (each value's repr), sorted."""


@dataclass(frozen=True, slots=True)
class Figures:
    """One drill's figures, as docs/high-availability.md reports them."""

    drill: str
    devices: int
    events: int
    in_flight: int
    """Events the devices had recorded but the store did not hold at the kill."""
    backlog: int
    """The most events recorded but not yet stored at any moment of the failover."""
    elected_s: float
    """From the kill until Patroni names another leader."""
    ingest_pause_s: float
    """The longest time without a stored event around the kill: how long ingest, and
    so the store, took no write."""
    resumed_s: float
    """From the kill until the first event stored after that pause."""
    drained_s: float
    """From the kill until every event recorded before it is stored."""
    lost: int
    duplicated: int

    def line(self) -> str:
        return (
            f"{self.drill}: {self.devices} devices, {self.events} events, "
            f"{self.in_flight} in flight at the kill, at most {self.backlog} waiting; "
            f"new leader after {self.elected_s:.1f} s; "
            f"no write for {self.ingest_pause_s:.1f} s (ingest resumed {self.resumed_s:.1f} s "
            f"after the kill); drained {self.drained_s:.1f} s after the kill; "
            f"lost {self.lost}, duplicated {self.duplicated}"
        )


def outbox_chains(path: Path, device_ids: Iterable[str]) -> Chains:
    """Every event each device recorded, sent or not."""
    outbox = Outbox(path)
    try:
        chains: Chains = {}
        for device_id in device_ids:
            entries = outbox.between(device_id, 1, outbox.head(device_id)[0])
            chains[device_id] = {e.seq: orjson.loads(e.wire)["hash"] for e in entries}
        return chains
    finally:
        outbox.close()


def outbox_heads(path: Path, device_ids: Iterable[str]) -> dict[str, int]:
    outbox = Outbox(path)
    try:
        return {device_id: outbox.head(device_id)[0] for device_id in device_ids}
    finally:
        outbox.close()


def unsent(path: Path) -> int:
    outbox = Outbox(path)
    try:
        return outbox.stats().unsent
    finally:
        outbox.close()


def stored_chains(url: str, device_ids: Iterable[str]) -> Chains:
    store = open_event_store(url)
    try:
        return {d: {e.seq: e.hash for e in store.read_stream(d)} for d in device_ids}
    finally:
        store.close()


def global_order(url: str) -> list[tuple[str, int, str]]:
    """``(stream, seq, hash)`` of every stored event, in the store's global order."""
    store = open_event_store(url)
    try:
        found: list[tuple[str, int, str]] = []
        cursor = Cursor.START
        while records := store.read_records(cursor, 10_000):
            found += [(record.stream_id, record.seq, record.hash) for record in records]
            cursor = records[-1].cursor
        return found
    finally:
        store.close()


def logged(url: str) -> list[tuple[str, int, str]]:
    """``(stream, seq, hash)`` of every leaf of the transparency log, in leaf order."""
    merkle_log = MerkleLog.open(url)
    try:
        found: list[tuple[str, int, str]] = []
        while leaves := merkle_log.leaves(after_index=len(found) - 1, limit=50_000):
            found += [(leaf.stream_id, leaf.seq, leaf.event_hash) for leaf in leaves]
        return found
    finally:
        merkle_log.close()


def stored_through_or_none(url: str, heads: dict[str, int]) -> int | None:
    """How many of the events up to ``heads`` (per device) are stored."""
    try:
        with psycopg.connect(url, connect_timeout=2) as connection:
            row = connection.execute(
                "SELECT count(*) FROM events e "
                "JOIN unnest(%s::text[], %s::bigint[]) AS h(stream_id, seq) "
                "ON e.stream_id = h.stream_id AND e.seq <= h.seq",
                (list(heads), list(heads.values())),
            ).fetchone()
    except psycopg.Error:
        return None
    return None if row is None else int(row[0])


def device_events_or_none(url: str) -> int | None:
    try:
        with psycopg.connect(url, connect_timeout=2) as connection:
            row = connection.execute(
                "SELECT count(*) FROM events WHERE stream_id = device_id"
            ).fetchone()
    except psycopg.Error:
        return None
    return None if row is None else int(row[0])


def longest_pause(url: str, around: datetime, within: timedelta) -> tuple[float, datetime]:
    """The longest gap between consecutive receive times of device events stored in
    ``around ± within``, and when the write after it was made."""
    with psycopg.connect(url) as connection:
        rows = connection.execute(
            "SELECT DISTINCT received_at FROM events "
            "WHERE stream_id = device_id AND received_at BETWEEN %s AND %s ORDER BY 1",
            (around - within, around + within),
        ).fetchall()
    moments: list[datetime] = [row[0] for row in rows]
    assert len(moments) > 1, "nothing was stored around the kill: the drill proved nothing"
    gap, after = max(
        ((later - earlier).total_seconds(), later) for earlier, later in itertools.pairwise(moments)
    )
    return gap, after


def settled(url: str) -> bool:
    """Whether every stored event is folded and logged, and a signed checkpoint covers
    the whole log (the projector signs at most every 10 s)."""
    store = open_event_store(url)
    read_models = ReadModelStore(url)
    merkle_log = MerkleLog.open(url)
    try:
        count = store.count_events()
        latest = merkle_log.latest_checkpoint()
        behind = store.read_records(read_models.checkpoint(PROJECTOR), 1)
        return (
            not behind
            and merkle_log.size() == count
            and latest is not None
            and latest.size == count
        )
    finally:
        merkle_log.close()
        read_models.close()
        store.close()


def read_models(url: str) -> ReadModels:
    """Every read-model table's rows, without the fold's cache and write times."""
    store = ReadModelStore(url)
    try:
        tables = store.tables
        rows: ReadModels = {}
        with store.engine.connect() as connection:
            for table in (tables.devices, tables.sessions, tables.cartridge_weeks,
                          tables.registry, tables.alerts, tables.custody):  # fmt: skip
                columns = [c for c in table.columns if c.name not in {"snapshot", "updated_at"}]
                found = connection.execute(select(*columns)).all()
                rows[table.name] = sorted((tuple(map(repr, row)) for row in found), key=repr)
        return rows
    finally:
        store.close()
