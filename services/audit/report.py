"""The lines ``coreline verify`` prints.  Pure: audits in, text out."""

from dataclasses import dataclass, replace
from typing import Self

from schemas import ChainStatus
from services.audit.chain_audit import ChainAudit, Finding, SessionVerdict
from services.audit.seal_coverage import SealCoverage


@dataclass(frozen=True, slots=True)
class Tally:
    """How the streams verified so far fared."""

    verified: int = 0
    broken: int = 0
    incomplete: int = 0
    events: int = 0
    seals_broken: int = 0
    """Streams whose chain may verify but a stored seal does not."""

    def counted(self, audit: ChainAudit, coverage: SealCoverage | None = None) -> Self:
        status = audit.status
        return replace(
            self,
            seals_broken=self.seals_broken
            + (coverage is not None and coverage.failure is not None),
            verified=self.verified + (status is ChainStatus.VERIFIED),
            broken=self.broken + (status is ChainStatus.BROKEN),
            incomplete=self.incomplete + (status is ChainStatus.INCOMPLETE),
            events=self.events + audit.events_checked,
        )

    @property
    def streams(self) -> int:
        return self.verified + self.broken + self.incomplete

    @property
    def all_verified(self) -> bool:
        return self.verified == self.streams and not self.seals_broken


def stream_lines(audit: ChainAudit, width: int = 0) -> list[str]:
    """One line naming the stream's status and its first bad event, then one per
    further finding (at most the kept ones, then how many more there were)."""
    name = audit.stream_id.ljust(width)
    headline = audit.headline
    if headline is None:
        events = "event" if audit.events_checked == 1 else "events"
        return [f"{name}  verified  {audit.events_checked} {events}"]
    lines = [f"{name}  {describe(headline)}"]
    indent = " " * len(name)
    lines += [f"{indent}  also {describe(other)}" for other in audit.findings if other != headline]
    unlisted = audit.findings_total - len(audit.findings)
    if unlisted > 0:
        lines.append(f"{indent}  … and {unlisted} more problems")
    return lines


def describe(finding: Finding) -> str:
    """``BROKEN at seq 17 (event …): …`` or ``INCOMPLETE: events 5..7 are missing (…)``."""
    if finding.status is ChainStatus.INCOMPLETE:
        return f"INCOMPLETE: {finding.detail} (before seq {finding.seq}, event {finding.event_id})"
    return f"BROKEN at seq {finding.seq} (event {finding.event_id}): {finding.detail}"


def session_line(verdict: SessionVerdict, stream_id: str) -> str:
    """The verdict on one session, with the seqs it spans in its device's stream."""
    subject = f"session {verdict.session_id} ({stream_id}"
    if verdict.first_seq is not None:
        through = verdict.end_seq if verdict.end_seq is not None else "…"
        subject += f", seq {verdict.first_seq}..{through}"
    subject += ")"
    if verdict.finding is not None:
        return f"{subject}  {describe(verdict.finding)}"
    if verdict.status is ChainStatus.VERIFIED:
        events = "event" if verdict.events == 1 else "events"
        return f"{subject}  verified  {verdict.events} {events}, chained from seq 1"
    return f"{subject}  INCOMPLETE: {verdict.detail}"


def summary_line(tally: Tally) -> str:
    streams = "stream" if tally.streams == 1 else "streams"
    line = (
        f"{tally.streams} {streams}, {tally.events} events: {tally.verified} verified, "
        f"{tally.broken} broken, {tally.incomplete} incomplete"
    )
    return line + (f", {tally.seals_broken} with a broken seal" if tally.seals_broken else "")
