"""The audit log: every change people made (policies, bounds, webhooks, users,
tokens), each with its author, read from the event store."""

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from services.api.access import Action, Principal
from services.api.deps import Store, allowed
from services.api.models import AuditEntryOut
from services.api.pagination import (
    CursorParam,
    Limit,
    Page,
    decode_time_cursor,
    next_cursor,
    time_key,
)
from services.api.problems import ERROR_RESPONSES, bad_request
from services.api.queries.audit_log import AuditEntry, AuditFilter, change_entries, select_entries

router = APIRouter(prefix="/audit-log", tags=["audit"], responses=ERROR_RESPONSES)
AuditLogReader = Annotated[Principal, Depends(allowed(Action.READ_AUDIT_LOG))]


def audit_filter(
    kind: Annotated[
        str | None,
        Query(
            max_length=64,
            description="An event type (`policy.changed`) or a family ending in `.` (`webhook.`).",
        ),
    ] = None,
    author: Annotated[
        str | None, Query(max_length=200, description="Part of the author, in any case.")
    ] = None,
    subject: Annotated[
        str | None,
        Query(
            max_length=200,
            description="What changed: `fleet`, `clinic:{id}`, `user:{id}` or `token:{id}`.",
        ),
    ] = None,
    since: Annotated[datetime | None, Query(description="From this time, inclusive.")] = None,
    until: Annotated[datetime | None, Query(description="Before this time.")] = None,
) -> AuditFilter:
    wanted = AuditFilter(kind, author, subject, _utc(since), _utc(until))
    if wanted.since and wanted.until and wanted.since >= wanted.until:
        raise bad_request("since must be before until")
    return wanted


@router.get("", summary="The changes people made")
def list_changes(
    who: AuditLogReader,
    store: Store,
    wanted: Annotated[AuditFilter, Depends(audit_filter)],
    cursor: CursorParam = None,
    limit: Limit = 100,
) -> Page[AuditEntryOut]:
    """Changes newest first (by the time the platform recorded them, then event id).
    Fleet-wide readers see every change; a clinic-scoped auditor sees its clinic's
    policy and webhook changes only."""
    entries = change_entries(store, who, wanted.subject)
    rows = select_entries(entries, wanted, decode_time_cursor(cursor), limit)
    return Page(
        items=[_out(entry) for entry in rows[:limit]],
        next_cursor=next_cursor(rows, limit, lambda entry: time_key(entry.time, entry.event_id)),
    )


def _utc(moment: datetime | None) -> datetime | None:
    """A time given without a zone is taken as UTC, the platform's clock."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def _out(entry: AuditEntry) -> AuditEntryOut:
    return AuditEntryOut(
        time=entry.time, kind=entry.kind, author=entry.author, subject=entry.subject,
        clinic_id=entry.clinic_id, stream_id=entry.stream_id, seq=entry.seq,
        event_id=entry.event_id, data=entry.data,
    )  # fmt: skip
