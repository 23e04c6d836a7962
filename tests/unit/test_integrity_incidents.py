"""Events the store refuses for a device are one integrity incident: one alert, raised
on the first refusal and updated by later ones while it is open, the device showing
``integrity`` until a person resolves it (DESIGN §4.2, §8).  Driven as the projector's
tick and step drive it, over the in-memory store."""

import uuid
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import orjson
import pytest

from schemas import GENESIS_HASH, SealedEvent, seal
from schemas.streams import alert_stream
from services.alerts.engine import AlertEngine
from services.alerts.incidents import (
    MAX_SEQ_RUNS,
    REFUSED_EVENTS,
    Refusal,
    RefusalTally,
    is_refusal_incident,
)
from services.alerts.policy import AlertPolicy
from services.api.commands import move_alert
from services.eventstore import Cursor, InMemoryEventStore, StoredDeadLetter
from services.projections import MaintenanceStatus, fact_from_body
from services.projector import Folder
from services.projector.refusals import (
    INCIDENT_KEY,
    append_incident_updates,
    incident_after,
    judge_refusals,
    open_incident,
    refusals_by_device,
)
from tests.support.streams import EPOCH, device_stream, event_fields, reseal, timestamp

DEVICE = "HP-000909"
CLINIC = "clinic-1"


def second_board(count: int) -> list[SealedEvent]:
    """Another board's own chain under the same id: the same seqs, other bytes."""
    chain: list[SealedEvent] = []
    prev_hash = GENESIS_HASH
    for event in device_stream(DEVICE, count):
        forged = reseal(
            event,
            event_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"second-board:{event.seq}")),
            occurred_at=timestamp(EPOCH + timedelta(hours=3, seconds=event.seq)),
            prev_hash=prev_hash,
        )
        chain.append(forged)
        prev_hash = forged.hash
    return chain


class Platform:
    """A store holding the device's first board's stream, the alert engine's book, and
    a fold of everything stored, driven the way the projector drives them."""

    def __init__(self, stored: int = 12) -> None:
        self.store = InMemoryEventStore()
        self.store.append(device_stream(DEVICE, stored))
        self.book: dict[str, dict[tuple[str, str], str]] = {}
        self.folder = Folder(lambda _ids: {}, lambda _ids: {})
        self.cursor = Cursor.START
        self.letters_after = 0
        self.alert_rows: dict[str, dict[str, Any]] = {}

    def refuse(self, events: list[SealedEvent], *, at: datetime | None = None) -> None:
        assert len(self.store.append(events, received_at=at).rejected) == len(events)

    def tick(self, *, letters_after: int | None = None) -> AlertEngine:
        """Judge the dead letters after the checkpoint, as ``Projector.tick`` does."""
        after = self.letters_after if letters_after is None else letters_after
        letters = self.store.dead_letters(after_id=after, limit=1000)
        self.letters_after = max([self.letters_after, *(letter.id for letter in letters)])
        engine = AlertEngine(self.book, lambda _clinic: AlertPolicy())
        judge_refusals(self.store, engine, refusals_by_device(letters), lambda _d: CLINIC)
        self.store.append(engine.decisions.raised)
        append_incident_updates(self.store, engine)
        return engine

    def step(self) -> None:
        """Fold what was appended since, as ``Projector.step`` (and a replay) do."""
        stored = self.store.read(self.cursor, 10_000)
        if not stored:
            return
        self.cursor = stored[-1].cursor
        update = self.folder.fold(stored)
        for row in update.alerts_raised:
            self.alert_rows[row["alert_id"]] = dict(row)
        for alert_id, columns in update.alert_changes:
            self.alert_rows[alert_id].update(columns)

    def status(self) -> MaintenanceStatus:
        return self.folder.projections[DEVICE].summary().status

    def incidents(self) -> list[dict[str, Any]]:
        return [row for row in self.alert_rows.values() if row["subject"] == REFUSED_EVENTS]

    def resolve(self, alert_id: str) -> None:
        move_alert(self.store, alert_id, DEVICE, "alert.resolved", "board recalled", "qa-lead")


def test_eleven_refused_events_are_one_incident_and_the_device_shows_integrity() -> None:
    """A second board's 11 refused events raise one open integrity alert counting 11,
    and the device's status is integrity, its most urgent."""
    platform = Platform()
    platform.step()
    assert platform.status() is MaintenanceStatus.OK
    platform.refuse(second_board(11))
    engine = platform.tick()
    platform.step()
    assert len(engine.decisions.raised) == 1
    assert engine.decisions.updated == []
    (incident,) = platform.incidents()
    assert (incident["rule"], incident["status"]) == ("integrity", "open")
    assert incident["context"]["refused_events"] == 11
    assert (incident["context"]["first_seq"], incident["context"]["last_seq"]) == (1, 11)
    assert "11 events" in incident["message"]
    assert "seqs 1-11" in incident["message"]
    assert len(platform.alert_rows) == 1
    summary = platform.folder.projections[DEVICE].summary()
    assert summary.status is MaintenanceStatus.INTEGRITY
    assert summary.attention[0] is MaintenanceStatus.INTEGRITY
    assert summary.integrity_alerts == (incident["alert_id"],)


def test_later_refusals_update_the_open_incident_instead_of_raising_another() -> None:
    """Refusals in a later tick raise the open incident again in its own stream, with
    the new count and seqs; resends of refused events add nothing."""
    platform = Platform()
    board = second_board(11)
    platform.refuse(board[:5])
    platform.tick()
    platform.refuse(board[5:])
    engine = platform.tick()
    platform.step()
    assert engine.decisions.raised == []
    (incident,) = platform.incidents()
    stream = platform.store.read_stream(alert_stream(incident["alert_id"]))
    assert [(event.seq, event.type) for event in stream] == [
        (1, "alert.raised"),
        (2, "alert.raised"),
    ]
    assert incident["context"]["refused_events"] == 11
    assert incident["context"]["seqs"] == "1-11"
    assert incident["status"] == "open"
    assert incident["last_seq"] == 2
    platform.refuse(board)  # the second board republishes all of it
    platform.tick()
    assert len(platform.store.read_stream(alert_stream(incident["alert_id"]))) == 2


def test_an_update_keeps_an_acknowledged_incident_acknowledged() -> None:
    """An incident someone acknowledged stays acknowledged when later refusals update it."""
    platform = Platform()
    board = second_board(6)
    platform.refuse(board[:3])
    platform.tick()
    platform.step()
    (incident,) = platform.incidents()
    move_alert(platform.store, incident["alert_id"], DEVICE, "alert.acknowledged", None, "qa")
    platform.refuse(board[3:])
    platform.tick()
    platform.step()
    (incident,) = platform.incidents()
    assert (incident["status"], incident["context"]["refused_events"]) == ("acknowledged", 6)
    assert platform.status() is MaintenanceStatus.INTEGRITY


def test_resolving_the_incident_restores_the_status_and_a_new_refusal_opens_another() -> None:
    """A person resolving the incident gives the device back its folded status; a
    refusal after that opens a second incident, a new alert."""
    platform = Platform()
    board = second_board(12)
    platform.refuse(board[:11])
    platform.tick()
    platform.step()
    (first,) = platform.incidents()
    platform.resolve(first["alert_id"])
    platform.step()
    assert platform.status() is MaintenanceStatus.OK
    assert platform.folder.projections[DEVICE].summary().integrity_alerts == ()
    assert platform.incidents()[0]["resolved_by"] == "qa-lead"
    platform.refuse(board[11:])
    engine = platform.tick()
    platform.step()
    assert len(engine.decisions.raised) == 1
    second = next(row for row in platform.incidents() if row["status"] == "open")
    assert second["alert_id"] != first["alert_id"]
    assert (second["context"]["refused_events"], second["context"]["seqs"]) == (1, "12")
    assert platform.folder.projections[DEVICE].summary().integrity_alerts == (second["alert_id"],)
    assert platform.status() is MaintenanceStatus.INTEGRITY


def test_judging_the_same_dead_letters_twice_counts_them_once() -> None:
    """A tick repeated over letters already judged (a crash before its checkpoint)
    raises and updates nothing."""
    platform = Platform()
    board = second_board(8)
    platform.refuse(board[:4])
    platform.tick()
    platform.refuse(board[4:])
    platform.tick()
    again = platform.tick(letters_after=0)
    assert (again.decisions.raised, again.decisions.updated) == ([], [])
    platform.step()
    (incident,) = platform.incidents()
    assert incident["context"]["refused_events"] == 8


def test_an_incident_resolved_while_it_is_being_updated_leaves_a_new_one() -> None:
    """Refusals whose incident a person resolves between the tick's read and its write
    open a new incident rather than updating a closed alert or being lost."""
    platform = Platform()
    board = second_board(5)
    platform.refuse(board[:2])
    platform.tick()
    platform.step()
    (first,) = platform.incidents()
    platform.refuse(board[2:])
    letters = platform.store.dead_letters(after_id=platform.letters_after)
    engine = AlertEngine(platform.book, lambda _clinic: AlertPolicy())
    judge_refusals(platform.store, engine, refusals_by_device(letters), lambda _d: CLINIC)
    assert len(engine.decisions.updated) == 1
    platform.resolve(first["alert_id"])  # in between
    append_incident_updates(platform.store, engine)
    platform.step()
    second = next(row for row in platform.incidents() if row["status"] == "open")
    assert second["context"]["refused_events"] == 3
    assert platform.book[DEVICE][INCIDENT_KEY] == second["alert_id"]


@pytest.mark.parametrize("racing", [False, True], ids=["next-tick", "racing-the-update"])
def test_an_incident_opened_within_the_millisecond_of_the_last_is_a_new_alert(
    racing: bool,
) -> None:
    """Refusals arriving in the same millisecond as those of an incident a person
    resolved open a new alert, whether judged in the next tick or while the resolved
    one was being updated: an incident's id is its opening letter, not its moment."""
    moment = datetime(2026, 11, 25, 9, 0, 0, 100, tzinfo=UTC)
    platform = Platform()
    board = second_board(5)
    platform.refuse(board[:2], at=moment)
    platform.tick()
    platform.step()
    (first,) = platform.incidents()
    platform.refuse(board[2:], at=moment + timedelta(microseconds=300))
    if racing:
        letters = platform.store.dead_letters(after_id=platform.letters_after)
        engine = AlertEngine(platform.book, lambda _clinic: AlertPolicy())
        judge_refusals(platform.store, engine, refusals_by_device(letters), lambda _d: CLINIC)
        platform.resolve(first["alert_id"])
        append_incident_updates(platform.store, engine)
    else:
        platform.resolve(first["alert_id"])
        platform.tick()
    platform.step()
    assert platform.store.dead_letters(after_id=5) == []  # no alert event refused
    (second,) = [row for row in platform.incidents() if row["status"] == "open"]
    assert second["alert_id"] != first["alert_id"]
    assert (second["context"]["refused_events"], second["context"]["seqs"]) == (3, "3-5")
    assert platform.book[DEVICE][INCIDENT_KEY] == second["alert_id"]


def test_the_engine_never_resolves_an_incident_by_itself() -> None:
    """Folding more of the device's own events leaves the incident open: only a person
    closes it."""
    platform = Platform(stored=6)
    platform.refuse(second_board(3))
    platform.tick()
    engine = AlertEngine(platform.book, lambda _clinic: AlertPolicy())
    platform.step()
    projection = platform.folder.projections[DEVICE]
    for event in device_stream(DEVICE, 8)[6:]:
        platform.store.append([event])
        fact = fact_from_body(event.body, event.hash, EPOCH)
        engine.after_fold(projection, fact, projection.apply(fact), CLINIC)
    assert engine.decisions.resolved == []
    assert INCIDENT_KEY in platform.book[DEVICE]


def test_per_seq_alerts_raised_before_incidents_still_count_and_resolve() -> None:
    """An open ``seq-N-refused`` alert from before incidents shows the integrity status
    and resolves as before."""
    platform = Platform()
    alert_id = str(uuid.uuid4())
    data = {
        "alert_id": alert_id, "rule": "integrity", "subject": "seq-5-refused",
        "severity": "critical", "clinic_id": CLINIC, "message": "a second event 5",
        "context": {"seq": 5},
    }  # fmt: skip
    fields = event_fields(DEVICE, 1, GENESIS_HASH, "alert.raised", data)
    platform.store.append([seal(fields, alert_stream(alert_id))])
    platform.step()
    assert platform.status() is MaintenanceStatus.INTEGRITY
    platform.resolve(alert_id)
    platform.step()
    assert platform.status() is MaintenanceStatus.OK
    assert platform.alert_rows[alert_id]["status"] == "resolved"


def test_only_refusals_of_a_devices_own_events_are_judged() -> None:
    """Dead letters of other reasons, without a device, or refusing a platform stream's
    event are no device's refusals."""
    at = datetime(2026, 11, 25, tzinfo=UTC)

    def letter(letter_id: int, reason: str, device: str | None, topic: str) -> StoredDeadLetter:
        return StoredDeadLetter(letter_id, at, topic, reason, "seq conflict", device, 3, b"", 0)

    letters = [
        letter(1, "integrity", DEVICE, f"coreline/v1/devices/{DEVICE}/events"),
        letter(2, "schema", DEVICE, f"coreline/v1/devices/{DEVICE}/events"),
        letter(3, "integrity", None, "coreline/v1/devices/HP-1/events"),
        letter(4, "integrity", DEVICE, f"platform/alert:{uuid.uuid4()}"),
    ]
    assert refusals_by_device(letters) == {DEVICE: [Refusal(1, 3, "seq conflict", at)]}


def test_a_tally_survives_its_alerts_context_and_lists_its_runs() -> None:
    """Refused seqs are listed as runs, a refusal naming no seq still counts, and the
    tally read back from the alert's context is the one written."""
    at = datetime(2026, 11, 25, tzinfo=UTC)
    seqs = [7, 3, 4, 5, None, 9, 4]
    tally = RefusalTally().add(
        Refusal(letter_id, seq, "x", at) for letter_id, seq in enumerate(seqs, start=1)
    )
    assert (tally.refused_events, tally.seqs_text(), tally.through_letter) == (6, "3-5, 7, 9", 7)
    assert tally.first_letter == 1
    written = orjson.loads(orjson.dumps(tally.context()))
    assert RefusalTally.from_context(written) == tally
    sparse = RefusalTally().add(Refusal(n, 3 * n, "x", at) for n in range(1, MAX_SEQ_RUNS + 10))
    assert len(sparse.seq_runs) == MAX_SEQ_RUNS
    assert sparse.refused_events == MAX_SEQ_RUNS + 9


def test_which_alerts_are_incidents_over_refused_events() -> None:
    """Incidents and the per-seq refusals before them are; findings and gaps are not."""
    assert is_refusal_incident("integrity", REFUSED_EVENTS)
    assert is_refusal_incident("integrity", "seq-12-refused")
    assert not is_refusal_incident("integrity", "seq-12-cores_mismatch")
    assert not is_refusal_incident("integrity", "gap-4")
    assert not is_refusal_incident("device_fault", REFUSED_EVENTS)


def test_an_update_event_is_the_incident_raised_again_after_the_head() -> None:
    """The update is an ``alert.raised`` at the head's next seq, linked to it, never
    earlier than the head."""
    platform = Platform()
    board = second_board(4)
    platform.refuse(board[:2])
    platform.tick()
    (alert_id,) = platform.book[DEVICE].values()
    platform.refuse(board[2:])
    letters = platform.store.dead_letters(after_id=platform.letters_after)
    engine = AlertEngine(platform.book, lambda _clinic: AlertPolicy())
    judge_refusals(platform.store, engine, refusals_by_device(letters), lambda _d: CLINIC)
    (update,) = engine.decisions.updated
    (head,) = platform.store.read_stream(alert_stream(alert_id))
    event = incident_after(update, head)
    assert event is not None
    assert (event.seq, event.prev_hash, event.type) == (2, head.hash, "alert.raised")
    assert event.occurred_at >= head.occurred_at
    assert orjson.loads(event.body)["data"]["alert_id"] == alert_id
    incident = open_incident(platform.store, alert_id)
    assert incident is not None
    assert incident.tally.refused_events == 2
    assert partial(incident_after, update)(None) is None
