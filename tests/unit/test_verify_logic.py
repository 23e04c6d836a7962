"""``coreline verify``'s pure parts: auditing a stream of stored records, the report
it prints, and reading a store stream by stream (against a fake of the port)."""

from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas import ChainStatus, SealedEvent, seal
from schemas.canonical import sha256_hex
from services.audit import (
    MAX_KEPT_FINDINGS,
    AllStreams,
    ChainAudit,
    Defect,
    DeviceTarget,
    SessionTarget,
    Tally,
    VerifyUsageError,
    audit_record,
    audit_stream,
    body_names_session,
    find_session_stream,
    parse_target,
    session_line,
    stream_lines,
    summary_line,
    verify,
)
from services.eventstore import Cursor, StoredEvent, StoredSeal
from tests.support.streams import device_stream, event_fields
from tests.support.vectors import STREAM_DEVICES, load_stream

RECEIVED = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
SESSION = UUID("ec99108d-db5b-4fab-8f4d-3e27dda1494c")
"""The session of the HP-000011 vector stream (seq 3..39)."""


def _stored(event: SealedEvent, position: int = 0) -> StoredEvent:
    return StoredEvent(
        cursor=Cursor(0, position),
        stream_id=event.stream_id,
        device_id=event.device_id,
        seq=event.seq,
        event_id=event.event_id,
        type=event.type,
        occurred_at=event.occurred_at,
        received_at=RECEIVED,
        hash=event.hash,
        prev_hash=event.prev_hash,
        body=event.body,
    )


def _vector_records(vectors_dir: Path, device_id: str = "HP-000011") -> list[StoredEvent]:
    events = []
    for position, wire in enumerate(load_stream(vectors_dir, device_id)["events"], 1):
        unsealed = {key: value for key, value in wire.items() if key != "hash"}
        events.append(_stored(seal(unsealed), position))
    return events


def _audit(records: Sequence[StoredEvent], session_id: UUID | None = None) -> ChainAudit:
    audit = ChainAudit(records[0].stream_id, session_id)
    for record in records:
        audit = audit_record(audit, record)
    return audit


def _rehashed(record: StoredEvent, body: bytes) -> StoredEvent:
    return replace(record, body=body, hash=sha256_hex(body))


def _extended(records: list[StoredEvent], count: int) -> list[StoredEvent]:
    """``records`` followed by ``count`` more correctly chained events."""
    last = records[-1]
    more = device_stream(last.device_id, count, first_seq=last.seq + 1, prev_hash=last.hash)
    return records + [_stored(event) for event in more]


@pytest.mark.parametrize("device_id", STREAM_DEVICES)
def test_a_clean_stream_verifies(vectors_dir: Path, device_id: str) -> None:
    """Every vector stream, stored untouched, verifies with nothing to report."""
    records = _vector_records(vectors_dir, device_id)
    audit = _audit(records)
    assert audit.status is ChainStatus.VERIFIED
    assert (audit.events_checked, audit.findings_total) == (len(records), 0)
    assert audit.last_hash == load_stream(vectors_dir, device_id)["expected"]["last_hash"]
    assert stream_lines(audit) == [f"{device_id}  verified  {len(records)} events"]


def test_a_body_altered_in_place_is_named(vectors_dir: Path) -> None:
    """A changed byte in a stored body breaks that event, and only that one: the
    next link is judged against the stored hash."""
    records = _vector_records(vectors_dir)
    victim = records[9]
    records[9] = replace(victim, body=victim.body.replace(b'"cores":', b'"cores":1'))
    audit = _audit(records)
    assert audit.status is ChainStatus.BROKEN
    assert audit.headline is not None
    assert (audit.headline.defect, audit.headline.seq) == (Defect.ALTERED, 10)
    assert audit.headline.event_id == victim.event_id
    assert audit.findings_total == 1
    assert stream_lines(audit)[0] == (
        f"HP-000011  BROKEN at seq 10 (event {victim.event_id}): "
        "the stored event does not hash to its stored hash: it was altered"
    )


def test_an_altered_and_rehashed_event_breaks_the_next_link(vectors_dir: Path) -> None:
    """Recomputing the altered event's hash moves the break to its successor."""
    records = _vector_records(vectors_dir)
    records[9] = _rehashed(records[9], records[9].body.replace(b'"depth_mm":1.5', b'"depth_mm":2'))
    audit = _audit(records)
    assert audit.headline is not None
    assert (audit.headline.defect, audit.headline.seq) == (Defect.UNLINKED, 11)
    assert audit.headline.event_id == records[10].event_id
    assert "seq 10 or this event was altered" in audit.headline.detail
    assert audit.findings_total == 1


def test_a_deleted_middle_row_leaves_a_gap(vectors_dir: Path) -> None:
    """A removed event makes the stream incomplete, naming the missing seq and the
    event after it, whose link can no longer be checked."""
    records = _vector_records(vectors_dir)
    del records[7]
    audit = _audit(records)
    assert audit.status is ChainStatus.INCOMPLETE
    assert audit.headline is not None
    assert (audit.headline.defect, audit.headline.seq) == (Defect.MISSING, 9)
    assert stream_lines(audit) == [
        f"HP-000011  INCOMPLETE: events 8..8 are missing (before seq 9, event "
        f"{records[7].event_id})"
    ]


def test_swapped_seqs_are_named_at_the_lower_one(vectors_dir: Path) -> None:
    """Two rows' seq values exchanged: each body names its own seq, so the lower row
    is the first bad event, and the higher one and the link after them show too."""
    records = _vector_records(vectors_dir)
    fifth, sixth = records[4], records[5]
    records[4], records[5] = replace(sixth, seq=5), replace(fifth, seq=6)
    audit = _audit(records)
    assert audit.status is ChainStatus.BROKEN
    assert [(f.defect, f.seq, f.event_id) for f in audit.findings] == [
        (Defect.RENUMBERED, 5, sixth.event_id),
        (Defect.RENUMBERED, 6, fifth.event_id),
        (Defect.UNLINKED, 7, records[6].event_id),
    ]
    assert "says it is seq 6" in audit.findings[0].detail
    lines = stream_lines(audit)
    assert lines[0].startswith(f"HP-000011  BROKEN at seq 5 (event {sixth.event_id})")
    assert lines[1].startswith(f"{' ' * 9}  also BROKEN at seq 6 (event {fifth.event_id})")


def test_deleted_first_events_leave_the_start_missing(vectors_dir: Path) -> None:
    """Without seq 1 the chain cannot be anchored at genesis."""
    audit = _audit(_vector_records(vectors_dir)[2:])
    assert audit.status is ChainStatus.INCOMPLETE
    assert audit.headline is not None
    assert audit.headline.detail == "events 1..2 are missing"


def test_deleting_the_newest_event_cannot_be_seen(vectors_dir: Path) -> None:
    """A documented limit: nothing points forward, so a chain cut short still verifies."""
    audit = _audit(_vector_records(vectors_dir)[:-1])
    assert audit.status is ChainStatus.VERIFIED


def test_a_first_event_that_does_not_start_at_genesis_is_broken() -> None:
    """Seq 1's prev_hash must be 64 zeros."""
    records = [_stored(event) for event in device_stream("HP-000001", 3, prev_hash="a" * 64)]
    audit = _audit(records)
    assert audit.headline is not None
    assert (audit.headline.defect, audit.headline.seq) == (Defect.UNLINKED, 1)


_COLUMN_CHANGES: dict[str, Callable[[StoredEvent], StoredEvent]] = {
    "type": lambda record: replace(record, type="fault.raised"),
    "event_id": lambda record: replace(record, event_id=UUID(int=7)),
    "prev_hash": lambda record: replace(record, prev_hash="f" * 64),
    "occurred_at": lambda record: replace(record, occurred_at=RECEIVED),
    "device_id": lambda record: replace(record, device_id="HP-999999"),
}


@pytest.mark.parametrize("column", _COLUMN_CHANGES)
def test_altered_columns_beside_the_body_are_named(vectors_dir: Path, column: str) -> None:
    """A column no hash covers, changed to disagree with the hashed body, is caught."""
    records = _vector_records(vectors_dir)
    records[4] = _COLUMN_CHANGES[column](records[4])
    audit = _audit(records)
    assert audit.headline is not None
    assert (audit.headline.defect, audit.headline.seq) == (Defect.COLUMN_MISMATCH, 5)
    assert f"stored {column} column" in audit.headline.detail


def test_a_break_outranks_an_earlier_gap_and_both_are_listed(vectors_dir: Path) -> None:
    """A broken stream is reported as broken at its first bad event; an earlier gap
    is listed below it rather than lost."""
    records = _vector_records(vectors_dir)
    records[20] = replace(records[20], body=records[20].body + b" ")
    del records[5]
    audit = _audit(records)
    assert audit.status is ChainStatus.BROKEN
    lines = stream_lines(audit)
    assert lines[0].startswith("HP-000011  BROKEN at seq 21 ")
    assert lines[1].startswith(f"{' ' * 9}  also INCOMPLETE: events 6..6 are missing")


def test_only_the_first_findings_are_kept(vectors_dir: Path) -> None:
    """Memory per stream stays bounded: later findings are counted, not kept."""
    records = [replace(record, body=record.body + b" ") for record in _vector_records(vectors_dir)]
    audit = _audit(records)
    assert len(audit.findings) == MAX_KEPT_FINDINGS
    assert audit.findings_total == 39
    assert stream_lines(audit)[-1].endswith(f"… and {39 - MAX_KEPT_FINDINGS} more problems")


def test_records_out_of_order_are_a_finding_not_a_crash(vectors_dir: Path) -> None:
    """A caller handing records out of seq order is told so."""
    records = _vector_records(vectors_dir)[:5]
    audit = _audit([*records, records[2]])
    assert audit.headline is not None
    assert (audit.headline.defect, audit.headline.seq) == (Defect.OUT_OF_ORDER, 3)


_TAMPERINGS = ("alter", "delete", "swap", "rehash")


@given(index=st.integers(min_value=0, max_value=37), tampering=st.sampled_from(_TAMPERINGS))
def test_any_tampering_short_of_the_newest_event_is_caught(index: int, tampering: str) -> None:
    """Whatever event is altered, removed, renumbered or rehashed (except the newest),
    the stream no longer verifies, and the first bad event is where it shows."""
    records = [_stored(event) for event in device_stream("HP-000001", 39)]
    victim = records[index]
    expected_seq = victim.seq
    if tampering == "alter":
        records[index] = replace(victim, body=victim.body.replace(b"{", b"{ ", 1))
    elif tampering == "delete":
        del records[index]
        expected_seq = victim.seq + 1
    elif tampering == "swap":
        following = records[index + 1]
        records[index], records[index + 1] = (
            replace(following, seq=victim.seq),
            replace(victim, seq=following.seq),
        )
    else:
        records[index] = _rehashed(victim, victim.body.replace(b'"seq"', b'"zzz":0,"seq"'))
        expected_seq = victim.seq + 1
    audit = _audit(records)
    assert audit.status is not ChainStatus.VERIFIED
    assert audit.headline is not None
    assert audit.headline.seq == expected_seq


def _session_records(vectors_dir: Path) -> list[StoredEvent]:
    """HP-000011's session (seq 3..39), then three more events after it."""
    return _extended(_vector_records(vectors_dir), 3)


def test_a_session_verifies_through_its_end(vectors_dir: Path) -> None:
    """Every link from the stream's start through session.ended holds: verified, and
    trouble after the session (past the link out of it) does not spoil it."""
    records = _session_records(vectors_dir)
    records[41] = replace(records[41], body=records[41].body + b" ")
    audit = _audit(records, SESSION)
    verdict = audit.session_verdict()
    assert audit.status is ChainStatus.BROKEN
    assert verdict.status is ChainStatus.VERIFIED
    assert (verdict.first_seq, verdict.end_seq, verdict.events) == (3, 39, 37)
    assert session_line(verdict, "HP-000011") == (
        f"session {SESSION} (HP-000011, seq 3..39)  verified  37 events, chained from seq 1"
    )


def test_a_session_depends_on_the_chain_before_it(vectors_dir: Path) -> None:
    """An event altered before the session started spoils the session too."""
    records = _session_records(vectors_dir)
    records[0] = replace(records[0], body=records[0].body.replace(b"2.4.1", b"2.4.2"))
    verdict = _audit(records, SESSION).session_verdict()
    assert verdict.status is ChainStatus.BROKEN
    assert verdict.finding is not None
    assert verdict.finding.seq == 1
    assert "BROKEN at seq 1 " in session_line(verdict, "HP-000011")


def test_a_rehashed_session_end_is_caught_by_the_link_out_of_it(vectors_dir: Path) -> None:
    """session.ended altered and rehashed shows only at the next seq; that link counts."""
    records = _session_records(vectors_dir)
    records[38] = _rehashed(
        records[38], records[38].body.replace(b'"cores_total":', b'"x":1,"cores_total":')
    )
    verdict = _audit(records, SESSION).session_verdict()
    assert verdict.status is ChainStatus.BROKEN
    assert verdict.finding is not None
    assert (verdict.finding.defect, verdict.finding.seq) == (Defect.UNLINKED, 40)


def test_a_session_without_its_end_is_incomplete(vectors_dir: Path) -> None:
    """With no session.ended stored, the session cannot be vouched for."""
    verdict = _audit(_vector_records(vectors_dir)[:-1], SESSION).session_verdict()
    assert verdict.status is ChainStatus.INCOMPLETE
    assert (verdict.first_seq, verdict.end_seq) == (3, None)
    assert "no session.ended is stored" in session_line(verdict, "HP-000011")


def test_a_gap_inside_a_session_makes_it_incomplete(vectors_dir: Path) -> None:
    """A removed punch inside the session leaves the session incomplete."""
    records = _session_records(vectors_dir)
    del records[20]
    verdict = _audit(records, SESSION).session_verdict()
    assert verdict.status is ChainStatus.INCOMPLETE
    assert verdict.finding is not None
    assert verdict.finding.detail == "events 21..21 are missing"


def test_bodies_are_matched_to_sessions_by_value(vectors_dir: Path) -> None:
    """A body names a session by ``data.session_id``, whatever the UUID's spelling."""
    records = _vector_records(vectors_dir)
    assert body_names_session(records[2].body, SESSION)
    assert not body_names_session(records[0].body, SESSION)
    assert not body_names_session(records[2].body, UUID(int=1))
    shouted = records[2].body.replace(str(SESSION).encode(), str(SESSION).upper().encode())
    assert body_names_session(shouted, SESSION)
    assert not body_names_session(b'{"session_id"', SESSION)


def test_the_summary_counts_streams_by_status(vectors_dir: Path) -> None:
    """The summary line adds up streams and events; all verified only when none failed."""
    clean = _audit(_vector_records(vectors_dir))
    gap = _audit(_vector_records(vectors_dir)[1:])
    tally = Tally().counted(clean).counted(gap)
    assert not tally.all_verified
    assert summary_line(tally) == "2 streams, 77 events: 1 verified, 0 broken, 1 incomplete"
    assert summary_line(Tally()) == "0 streams, 0 events: 0 verified, 0 broken, 0 incomplete"
    assert Tally().all_verified


@pytest.mark.parametrize(
    ("device", "session", "all_streams", "expected"),
    [
        ("HP-000011", None, False, DeviceTarget("HP-000011")),
        (None, str(SESSION).upper(), False, SessionTarget(SESSION)),
        (None, None, True, AllStreams()),
    ],
)
def test_the_command_line_names_one_target(
    device: str | None, session: str | None, all_streams: bool, expected: object
) -> None:
    """Exactly one of --device, --session and --all picks what is verified."""
    assert parse_target(device, session, all_streams) == expected


@pytest.mark.parametrize(
    ("device", "session", "all_streams", "message"),
    [
        (None, None, False, "one of --device ID, --session ID or --all"),
        ("HP-000011", None, True, "one of --device ID, --session ID or --all"),
        ("hp 11", None, False, "--device 'hp 11'"),
        (None, "not-a-uuid", False, "a session id is a UUID"),
    ],
)
def test_bad_targets_are_refused(
    device: str | None, session: str | None, all_streams: bool, message: str
) -> None:
    """Nothing, several things, or a malformed id: refused with what to fix."""
    with pytest.raises(VerifyUsageError, match=message):
        parse_target(device, session, all_streams)


class _FakeStreams:
    """A store's stream reads, from lists in memory; counts the reads."""

    def __init__(self, records: Sequence[StoredEvent]) -> None:
        self._streams: dict[str, list[StoredEvent]] = {}
        for record in records:
            self._streams.setdefault(record.stream_id, []).append(record)
        self.reads: list[tuple[str, int, int | None]] = []

    def stream_ids(self) -> list[str]:
        return sorted(self._streams)

    def read_stream(
        self, stream_id: str, from_seq: int = 1, to_seq: int | None = None, limit: int | None = None
    ) -> list[StoredEvent]:
        self.reads.append((stream_id, from_seq, limit))
        selected = [
            record
            for record in self._streams.get(stream_id, [])
            if from_seq <= record.seq and (to_seq is None or record.seq <= to_seq)
        ]
        return selected[:limit] if limit else selected

    def read_seals(self, stream_id: str, from_seq: int = 1, limit: int = 0) -> list[StoredSeal]:
        return []


def _fleet(vectors_dir: Path) -> list[StoredEvent]:
    return [record for device in STREAM_DEVICES for record in _vector_records(vectors_dir, device)]


def test_a_stream_is_read_in_chunks(vectors_dir: Path) -> None:
    """Streams are read ``chunk`` events at a time, each read starting past the last."""
    store = _FakeStreams(_vector_records(vectors_dir))
    audit = audit_stream(store, "HP-000011", chunk=16)
    assert audit.status is ChainStatus.VERIFIED
    assert audit.events_checked == 39
    assert store.reads == [("HP-000011", 1, 16), ("HP-000011", 17, 16), ("HP-000011", 33, 16)]


def test_verify_all_reports_each_stream_and_a_summary(vectors_dir: Path) -> None:
    """One line per stream, the summary last; False as soon as one stream fails."""
    records = _fleet(vectors_dir)
    records[45] = replace(records[45], body=records[45].body + b" ")
    lines: list[str] = []
    assert not verify(_FakeStreams(records), AllStreams(), lines.append)
    assert lines[0] == "HP-000011  verified  39 events"
    assert lines[1] == "HP-000011  unsigned"
    assert lines[2].startswith(f"HP-000012  BROKEN at seq 7 (event {records[45].event_id})")
    assert lines[4] == "HP-000013  verified  31 events"
    assert lines[6] == "3 streams, 95 events: 2 verified, 1 broken, 0 incomplete"


def test_verify_a_device_that_has_no_events_is_refused(vectors_dir: Path) -> None:
    """Asking for a device with nothing stored is a usage error, not a verdict."""
    with pytest.raises(VerifyUsageError, match="no events are stored for device HP-000099"):
        verify(_FakeStreams(_fleet(vectors_dir)), DeviceTarget("HP-000099"), print)


def test_verify_a_session_finds_its_device_and_judges_the_session(vectors_dir: Path) -> None:
    """The session's stream is found by scanning, reported whole, and the answer is
    the session's own verdict."""
    records = _fleet(vectors_dir)
    session_of_13 = UUID(load_stream(vectors_dir, "HP-000013")["expected"]["session_id"])
    store = _FakeStreams(records)
    assert find_session_stream(store, session_of_13) == "HP-000013"
    assert find_session_stream(store, UUID(int=5)) is None
    lines: list[str] = []
    assert verify(store, SessionTarget(session_of_13), lines.append)
    assert lines == [
        "HP-000013  verified  31 events",
        "HP-000013  unsigned",
        f"session {session_of_13} (HP-000013, seq 3..31)  verified  29 events, chained from seq 1",
    ]
    with pytest.raises(VerifyUsageError, match="no stored event belongs to session"):
        verify(store, SessionTarget(UUID(int=5)), lines.append)


def test_platform_streams_are_verified_but_not_searched_for_sessions() -> None:
    """Streams other than a device's are audited like any chain."""
    registered = seal(
        event_fields(
            "HP-000001", 1, "0" * 64, "device.registered", {"model": "CX-1", "registered_by": "ops"}
        ),
        "registry:HP-000001",
    )
    store = _FakeStreams([_stored(registered)])
    lines: list[str] = []
    assert verify(store, AllStreams(), lines.append)
    assert lines[0] == "registry:HP-000001  verified  1 event"
    assert find_session_stream(store, SESSION) is None
