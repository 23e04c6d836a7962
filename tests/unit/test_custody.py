"""Custody intervals folded from assignments, and whose each event is
(``services.projections.custody``): pure values, no store."""

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from services.projections.custody import Custody, assign, event_owner

AT = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
CLINICS = st.sampled_from(["clinic-a", "clinic-b", "clinic-c", None])
STEPS = st.lists(st.one_of(st.just("event"), CLINICS.map(lambda clinic: ("assign", clinic))))


def _fold(steps: list[object]) -> tuple[Custody, dict[int, str | None]]:
    """Custody after ``steps``, and who held the device when each event came."""
    custody, holder, seq, registry_seq = Custody("HP-000001"), None, 0, 0
    held_when: dict[int, str | None] = {}
    for step in steps:
        if step == "event":
            seq += 1
            held_when[seq] = holder
        else:
            assert isinstance(step, tuple)
            registry_seq += 1
            holder = step[1]
            custody = assign(
                custody, holder, registry_seq=registry_seq, device_seen_through=seq,
                at=AT + timedelta(minutes=registry_seq),
            )  # fmt: skip
    return custody, held_when


@given(STEPS)
def test_every_event_belongs_to_whoever_held_the_device_when_it_came(steps: list[object]) -> None:
    """Whatever the run of assignments and events, each seq falls in the interval of
    the clinic (or none) that held the device when the event arrived."""
    custody, held_when = _fold(steps)
    assert {seq: custody.holder_at(seq) for seq in held_when} == held_when


@given(STEPS, CLINICS)
def test_an_assignment_folded_twice_changes_nothing(
    steps: list[object], clinic: str | None
) -> None:
    """A redelivered assignment (registry seq already folded) leaves custody as it was."""
    custody, held_when = _fold(steps)
    again = assign(
        custody, clinic, registry_seq=custody.assignments_through,
        device_seen_through=len(held_when) + 5, at=AT,
    )  # fmt: skip
    assert again == custody


def test_intervals_are_cut_at_the_device_seq_seen_when_the_move_is_folded() -> None:
    """A to B after seq 3 closes A's interval at 3 and opens B's at 4; a move with no
    event since leaves an empty interval that owns nothing."""
    custody = assign(Custody("HP-1"), "a", registry_seq=2, device_seen_through=0, at=AT)
    custody = assign(custody, "b", registry_seq=3, device_seen_through=3, at=AT)
    custody = assign(custody, "c", registry_seq=4, device_seen_through=3, at=AT)
    spans = [(i.clinic_id, i.from_seq, i.to_seq) for i in custody.intervals]
    assert spans == [("a", 1, 3), ("b", 4, 3), ("c", 4, None)]
    assert [custody.holder_at(seq) for seq in (1, 3, 4, 99)] == ["a", "a", "c", "c"]
    assert custody.holder == "c"


def test_a_sessions_events_belong_to_its_clinic_wherever_they_fall() -> None:
    """An event naming a known session is that session's clinic's; one naming none,
    or an unknown session, is the interval's."""
    custody = assign(Custody("HP-1"), "a", registry_seq=1, device_seen_through=0, at=AT)
    custody = assign(custody, "b", registry_seq=2, device_seen_through=5, at=AT)
    sessions = {"s-1": "a"}
    assert event_owner(custody, 9, "s-1", sessions) == "a"
    assert event_owner(custody, 9, None, sessions) == "b"
    assert event_owner(custody, 9, "s-unknown", sessions) == "b"
    assert event_owner(custody, 2, None, sessions) == "a"


def test_events_before_the_first_assignment_are_no_clinics() -> None:
    """A device that reported before it was assigned keeps that past to itself."""
    custody = assign(Custody("HP-1"), "a", registry_seq=1, device_seen_through=4, at=AT)
    assert [custody.holder_at(seq) for seq in (1, 4, 5)] == [None, None, "a"]
