"""The fold's fast paths give what the plain ones give: a simulated fleet day folds
into the same device rows, session rows, snapshots and alert decisions as the fold
gave before them (pinned by digest), a stored body gives the same ``Fact`` as its wire
form, the punch pace sums and drops windows as summing them afresh does, and the
changes a fold returns compare by kind and value."""

import hashlib
import pickle
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from schemas import SealedEvent
from services.alerts.engine import AlertEngine, Key
from services.eventstore import Cursor, EventRecord
from services.projections.changes import (
    Applied,
    Change,
    FaultClosed,
    SessionChanged,
    SessionClosed,
)
from services.projections.device import DeviceProjection
from services.projections.facts import Fact, fact_from_body, fact_from_wire
from services.projections.forecast import PunchRate
from services.projections.read_store import SNAPSHOT_FORMAT
from services.projector.folder import Folder
from tests.unit.test_alert_judging import _TIGHT, START, _delivered, _fleet_day

FLEET_DAY_DIGEST = "19750a35a4d5efe5053aaf7be6f97f4325fde68d87a77ee957b41d0d6f624a5f"
"""SHA-256 of what ``_fold_day`` gives: taken from the fold before its fast paths
(flat ``isinstance`` chains, frozen changes, ``standing_keys`` through ``_rungs``).
A change to what the read rows or alerts hold must change it knowingly."""


def _records(streams: list[list[SealedEvent]]) -> Iterator[EventRecord]:
    """The devices' deliveries interleaved in runs of 25, as a gateway appends them,
    with gaps and redeliveries (``_delivered``), each received shortly after its
    device time."""
    rng = random.Random(7)
    delivered = [_delivered(stream, rng) for stream in streams]
    received = START
    position = 0
    for offset in range(0, max(map(len, delivered)), 25):
        for stream in delivered:
            for sealed in stream[offset : offset + 25]:
                event = sealed.event
                received = max(received, event.occurred_at) + timedelta(seconds=1)
                position += 1
                yield EventRecord(
                    Cursor(position, 0), event.device_id, event.device_id, event.seq,
                    event.type, received, event.hash, sealed.body,
                )  # fmt: skip


def _fold_day() -> list[Any]:
    """A fleet day through ``Folder`` with the alert engine, in batches of 400, as
    the live projector folds it: every row, snapshot and decision, comparable."""
    records = list(_records(_fleet_day(devices=8, hours=30)))
    book: dict[str, dict[Key, str]] = {}
    folder = Folder(lambda _ids: {}, lambda _ids: {})
    out: list[Any] = []
    for start in range(0, len(records), 400):
        engine = AlertEngine(book, lambda _clinic: _TIGHT)
        folder.engine = engine
        update = folder.fold(records[start : start + 400])
        # Rows in a fixed order: a batch's come in the order of a set of device ids.
        for row in sorted(update.devices, key=lambda row: str(row["device_id"])):
            version, projection = pickle.loads(row["snapshot"])  # noqa: S301 - our own
            assert version == SNAPSHOT_FORMAT
            assert projection == folder.projections[row["device_id"]]
            out.append({key: value for key, value in row.items() if key != "updated_at"})
        out.extend(sorted(update.sessions, key=lambda row: str(row["session_id"])))
        decisions = engine.decisions
        out.append({
            "raised": [(event.stream_id, event.body) for event in decisions.raised],
            "escalated": [(e.alert_id, e.condition.key, e.at) for e in decisions.escalated],
            "resolved": decisions.resolved,
            "added": sorted((*key, alert_id) for key, alert_id in decisions.added.items()),
            "removed": sorted(decisions.removed),
        })  # fmt: skip
    return out


def _digest(folded: list[Any]) -> str:
    text = orjson.dumps(folded, option=orjson.OPT_PASSTHROUGH_SUBCLASS, default=_plain)
    return hashlib.sha256(text).hexdigest()


def _plain(value: object) -> object:
    if isinstance(value, bytes):
        return value.hex()
    raise TypeError(type(value))


def test_a_fleet_day_folds_into_the_rows_and_alerts_it_folded_into_before() -> None:
    folded = _fold_day()
    # Worth comparing: rows of every kind and alerts raised and resolved.
    assert sum(1 for item in folded if isinstance(item, dict) and "snapshot" in item) > 50
    assert any(isinstance(item, dict) and "audit" in item for item in folded)
    decided = [item for item in folded if isinstance(item, dict) and "raised" in item]
    assert sum(len(batch["raised"]) for batch in decided) > 10
    assert sum(len(batch["resolved"]) for batch in decided) > 5
    assert any(batch["escalated"] for batch in decided)
    assert _digest(folded) == FLEET_DAY_DIGEST


def test_a_stored_body_gives_the_fact_of_its_wire_form() -> None:
    received = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
    for sealed in _fleet_day(devices=1, hours=2)[0][:50]:
        wire = orjson.loads(sealed.body) | {"hash": sealed.event.hash}
        fact = fact_from_body(sealed.body, sealed.event.hash, received)
        assert type(fact) is Fact
        assert fact == fact_from_wire(wire, received)
        assert fact._replace(seq=0).seq == 0  # a NamedTuple still, not a bare tuple
        assert fact.occurred_at == sealed.event.occurred_at


class _SummedAfresh:
    """The punch pace as the plain definition has it: every window kept, the oldest
    dropped while the rest still cover the horizon, each sum updated on the object."""

    def __init__(self, horizon_s: float) -> None:
        self.horizon_s = horizon_s
        self.windows: list[tuple[float, int]] = []
        self.seconds = 0.0
        self.actuations = 0

    def add(self, length: float, actuations: int) -> None:
        length = max(length, 0.0)
        self.windows.append((length, actuations))
        self.seconds += length
        self.actuations += actuations
        while len(self.windows) > 1 and self.seconds - self.windows[0][0] >= self.horizon_s:
            dropped, count = self.windows.pop(0)
            self.seconds -= dropped
            self.actuations -= count


def test_the_punch_pace_sums_and_drops_windows_as_summing_them_afresh() -> None:
    rng = random.Random(3)
    at = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
    for horizon in (600.0, 30.0, 0.5):
        pace, afresh = PunchRate(horizon), _SummedAfresh(horizon)
        for _ in range(3000):  # past the compaction of dropped windows
            start = at + timedelta(milliseconds=rng.randrange(0, 60_000))
            end = start + timedelta(milliseconds=rng.randrange(-500, 4000))  # some negative
            actuations = rng.randrange(0, 20)
            pace.add(_text(start), _text(end), actuations)
            afresh.add((end - start).total_seconds(), actuations)
            at = start
            assert (pace.seconds, pace.actuations) == (afresh.seconds, afresh.actuations)
            assert list(pace.counted()) == afresh.windows


def _text(at: datetime) -> str:
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def test_the_changes_of_a_fold_compare_by_kind_and_value() -> None:
    projection = DeviceProjection("HP-000001")
    stream = _fleet_day(devices=1, hours=2)[0]
    fact = fact_from_body(stream[0].body, stream[0].event.hash, None)
    assert projection.apply(fact) == [Applied(fact)]
    assert SessionChanged("s-1") == SessionChanged("s-1")
    assert SessionChanged("s-1") != SessionChanged("s-2")
    changes: list[Change] = [SessionChanged("s-1"), FaultClosed("s-1")]
    assert changes[0] != changes[1]  # the same field, another kind of change
    assert SessionClosed("s-1", True) != SessionClosed("s-1", False)
