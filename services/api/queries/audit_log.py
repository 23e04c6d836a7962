"""The audit log: every change people made, read from the change streams of the
event store (DESIGN §4), newest first.

Read straight from the streams, with no read model: people change settings rarely
(hundreds of events, not millions), so the change streams are short, and what an
auditor reads is then exactly what the hash chains hold.  A clinic-scoped reader
reads one stream only, its clinic's configuration.  The filtering and paging below
are pure (``select_entries``); only ``change_entries`` touches the store.

Order: newest first by the platform's recording time (``occurred_at``, the
platform's clock), ties broken by event id, descending; the cursor holds that pair,
so a page never repeats or skips an entry whatever is recorded meanwhile.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from schemas.streams import (
    change_subject,
    clinic_config_stream,
    clinic_of_change_stream,
    is_change_stream,
)
from services.api.access import Principal
from services.eventstore import EventStore, StoredEvent


@dataclass(frozen=True, slots=True)
class AuditEntry:
    time: datetime
    kind: str
    author: str
    subject: str
    """What changed: ``fleet``, ``clinic:{id}``, ``user:{id}`` or ``token:{id}``."""
    clinic_id: str | None
    """The clinic whose configuration changed (``None``: not a clinic's)."""
    stream_id: str
    seq: int
    event_id: str
    data: dict[str, Any]
    """The event's data without ``by`` (that is ``author``)."""


@dataclass(frozen=True, slots=True)
class AuditFilter:
    kind: str | None = None
    """One event type (``policy.changed``) or a family ending in ``.`` (``webhook.``)."""
    author: str | None = None
    """Part of the author, in any case."""
    subject: str | None = None
    since: datetime | None = None
    """Inclusive."""
    until: datetime | None = None
    """Exclusive."""

    def admits(self, entry: AuditEntry) -> bool:
        if self.kind is not None and not (
            entry.kind == self.kind
            or (self.kind.endswith(".") and entry.kind.startswith(self.kind))
        ):
            return False
        if self.author is not None and self.author.casefold() not in entry.author.casefold():
            return False
        if self.subject is not None and entry.subject != self.subject:
            return False
        if self.since is not None and entry.time < self.since:
            return False
        return self.until is None or entry.time < self.until


def entry_of(event: StoredEvent) -> AuditEntry:
    body = orjson.loads(event.body)
    data = {key: value for key, value in body["data"].items() if key != "by"}
    return AuditEntry(
        time=event.occurred_at, kind=event.type, author=body["data"]["by"],
        subject=change_subject(event.stream_id),
        clinic_id=clinic_of_change_stream(event.stream_id), stream_id=event.stream_id,
        seq=event.seq, event_id=str(event.event_id), data=data,
    )  # fmt: skip


def readable_streams(store: EventStore, who: Principal, subject: str | None) -> list[str]:
    """The change streams ``who`` may read, narrowed to ``subject``'s when given."""
    if who.clinic_id is not None:
        own = clinic_config_stream(who.clinic_id)
        wanted = f"{own.split(':', 1)[0]}:{subject}" if subject is not None else own
        return [own] if wanted == own else []
    return [
        stream_id
        for stream_id in store.stream_ids()
        if is_change_stream(stream_id) and (subject is None or change_subject(stream_id) == subject)
    ]


def change_entries(store: EventStore, who: Principal, subject: str | None) -> list[AuditEntry]:
    return [
        entry_of(event)
        for stream_id in readable_streams(store, who, subject)
        for event in store.read_stream(stream_id)
    ]


def select_entries(
    entries: Iterable[AuditEntry],
    wanted: AuditFilter,
    after: tuple[datetime, str] | None,
    limit: int,
) -> list[AuditEntry]:
    """Up to ``limit + 1`` entries that ``wanted`` admits, newest first, after the
    cursor ``after`` (the extra one tells the caller another page follows)."""
    ordered = sorted(
        (entry for entry in entries if wanted.admits(entry)),
        key=lambda entry: (entry.time, entry.event_id),
        reverse=True,
    )
    if after is not None:
        moment, event_id = after[0].astimezone(UTC), after[1]
        ordered = [entry for entry in ordered if (entry.time, entry.event_id) < (moment, event_id)]
    return ordered[: limit + 1]


def _kind_matches(kind: str, wanted: str) -> bool:
    return kind == wanted or (wanted.endswith(".") and kind.startswith(wanted))
