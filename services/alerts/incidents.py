"""Integrity incidents over refused events: every event the store refuses for a
device (a seq conflict, a chain break, a run that fails chain custody: DESIGN §4.2,
§5) belongs to one open ``integrity`` alert of that device, not to an alert per seq.

The incident's alert is raised on the first refusal and, while it is open, each
later refusal *updates* it (DESIGN §8): the alert is raised again in its own stream
(``alert.raised`` at the next seq, same alert id) with the count and seqs so far.
What it covers travels in its context (``RefusalTally``), so the next update starts
from the alert's own stream and nothing else; ``through_letter``, the last dead
letter counted, makes judging the same letters twice (a crash before the checkpoint)
count nothing twice.  Its alert id is drawn from the device and ``first_letter``, the
dead letter that opened it, not from when it opened: a refusal in the very millisecond
a person resolved the last incident must still open a new alert, not collide with the
closed one's stream.  Only newly refused events update it: a device resending the
events refused already (its agent republishes what stays unacknowledged) is refused
again each time, and adds nothing to say.  Once a person resolves the incident, the
next refusal opens a new one, a new alert.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from schemas import Severity
from schemas.platform_events import AlertRule
from services.alerts.conditions import Condition, ContextValue

REFUSED_EVENTS: Final = "refused-events"
"""The subject of a device's incident over refused events."""

_LEGACY_SUBJECT: Final = ("seq-", "-refused")
"""Refusals raised one alert per seq before incidents (``seq-{n}-refused``)."""

MAX_SEQ_RUNS: Final = 64
"""Runs of refused seqs an incident lists; beyond it the two closest runs are merged
(the list then spans a few seqs that were not refused).  Refused events come in runs
(a second board's chain, a run that fails custody), so this is rarely reached."""


def is_refusal_incident(rule: str, subject: str) -> bool:
    """Whether an alert is about events the store refused: an incident, or one of the
    per-seq alerts raised before incidents (they keep counting until resolved)."""
    if rule != AlertRule.INTEGRITY.value:
        return False
    prefix, suffix = _LEGACY_SUBJECT
    return subject == REFUSED_EVENTS or (subject.startswith(prefix) and subject.endswith(suffix))


@dataclass(frozen=True, slots=True)
class Refusal:
    """One event the store refused for integrity: one dead letter."""

    letter_id: int
    seq: int | None
    """``None`` when the dead letter names no single seq."""
    detail: str
    received_at: datetime


@dataclass(frozen=True, slots=True)
class RefusalTally:
    """What an incident covers so far; kept in its alert's context."""

    refused_events: int = 0
    """Distinct refused events: seqs not refused before, plus refusals naming no seq.
    A resend of a refused event is refused again but counted once."""
    seq_runs: tuple[tuple[int, int], ...] = ()
    """Refused seqs as inclusive ranges, ascending."""
    through_letter: int = 0
    """The last dead letter counted (dead-letter ids grow in arrival order)."""
    first_letter: int = 0
    """The dead letter that opened the incident, its identity: a later incident counts
    only letters past this one's ``through_letter``, so no two share it (0: unknown)."""

    def add(self, refusals: Iterable[Refusal]) -> "RefusalTally":
        """The tally with ``refusals`` counted; ones counted already are skipped."""
        tally = self
        for refusal in sorted(refusals, key=lambda refusal: refusal.letter_id):
            if refusal.letter_id <= tally.through_letter:
                continue
            new_event = refusal.seq is None or not _covers(tally.seq_runs, refusal.seq)
            runs = tally.seq_runs if refusal.seq is None else _with(tally.seq_runs, refusal.seq)
            tally = RefusalTally(
                refused_events=tally.refused_events + int(new_event),
                seq_runs=runs,
                through_letter=refusal.letter_id,
                first_letter=tally.first_letter if tally.through_letter else refusal.letter_id,
            )
        return tally

    @property
    def first_seq(self) -> int | None:
        return self.seq_runs[0][0] if self.seq_runs else None

    @property
    def last_seq(self) -> int | None:
        return self.seq_runs[-1][1] if self.seq_runs else None

    def seqs_text(self) -> str:
        """``"1-11, 15"``: the runs of refused seqs."""
        return ", ".join(
            f"{low}" if low == high else f"{low}-{high}" for low, high in self.seq_runs
        )

    def context(self) -> dict[str, ContextValue]:
        return {
            "refused_events": self.refused_events,
            "first_seq": self.first_seq,
            "last_seq": self.last_seq,
            "seqs": self.seqs_text(),
            "through_letter": self.through_letter,
            "first_letter": self.first_letter,
        }

    @classmethod
    def from_context(cls, context: Mapping[str, object]) -> "RefusalTally":
        """The tally an incident's alert recorded (an empty one for anything else)."""
        refused, through, seqs = (
            context.get("refused_events"), context.get("through_letter"), context.get("seqs")
        )  # fmt: skip
        if not isinstance(refused, int):
            return cls()
        first = context.get("first_letter")
        return cls(
            refused_events=refused,
            seq_runs=_parse_runs(seqs) if isinstance(seqs, str) else (),
            through_letter=through if isinstance(through, int) else 0,
            first_letter=first if isinstance(first, int) else 0,
        )


@dataclass(frozen=True, slots=True)
class OpenIncident:
    """A device's incident alert that no one has resolved yet, as its stream holds it."""

    alert_id: str
    tally: RefusalTally


def incident_condition(
    device_id: str, tally: RefusalTally, since: datetime, latest: str
) -> Condition:
    """The incident's alert as it stands with ``tally``; ``latest`` is the newest
    refusal's reason."""
    count = tally.refused_events
    events = "event" if count == 1 else "events"
    seqs = f" (seqs {tally.seqs_text()})" if tally.seq_runs else ""
    message = (
        f"the store refused {count} {events} sent as {device_id}{seqs}: they conflict with "
        f"its stored stream or do not link onto it, so the stream keeps its first writer "
        f"and another board may be using this id; latest: {latest}"
    )
    return Condition(
        AlertRule.INTEGRITY, REFUSED_EVENTS, Severity.CRITICAL, message, since, tally.context(),
        spell=f"letter-{tally.first_letter}",
    )  # fmt: skip


def _covers(runs: tuple[tuple[int, int], ...], seq: int) -> bool:
    return any(low <= seq <= high for low, high in runs)


def _with(runs: tuple[tuple[int, int], ...], seq: int) -> tuple[tuple[int, int], ...]:
    """``runs`` with ``seq`` in, neighbours joined, at most ``MAX_SEQ_RUNS`` long."""
    merged: list[tuple[int, int]] = []
    for low, high in sorted([*runs, (seq, seq)]):
        if merged and low <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(high, merged[-1][1]))
        else:
            merged.append((low, high))
    while len(merged) > MAX_SEQ_RUNS:
        closest = min(range(len(merged) - 1), key=lambda i: merged[i + 1][0] - merged[i][1])
        merged[closest : closest + 2] = [(merged[closest][0], merged[closest + 1][1])]
    return tuple(merged)


def _parse_runs(text: str) -> tuple[tuple[int, int], ...]:
    runs: list[tuple[int, int]] = []
    for part in filter(None, (piece.strip() for piece in text.split(","))):
        low, _, high = part.partition("-")
        if not (low.isdigit() and (not high or high.isdigit())):
            return ()  # not written by ``seqs_text``: start the runs afresh
        runs.append((int(low), int(high or low)))
    return tuple(runs)
