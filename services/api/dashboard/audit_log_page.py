"""The audit-log page: every change people made (policies, bounds, webhooks, users,
tokens), newest first, with who made it; for manufacturers and auditors, scoped
exactly as ``GET /api/v1/audit-log`` is.  Registered on the dashboard's router when
the package loads (``services/api/dashboard/__init__.py``)."""

from typing import Annotated

from fastapi import Query, Request
from fastapi.responses import Response

from services.api.access import Action
from services.api.dashboard.routes import Api, Viewer, _page, _require, router
from services.api.queries.audit_log import AuditFilter, change_entries, select_entries

_SHOWN = 200


@router.get("/audit-log")
def audit_log_page(
    request: Request,
    who: Viewer,
    api: Api,
    kind: Annotated[str | None, Query(max_length=64)] = None,
    subject: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    _require(who, Action.READ_AUDIT_LOG)
    wanted = AuditFilter(kind=kind or None, subject=subject or None)
    with api.stores.borrow() as store:
        entries = change_entries(store, who, wanted.subject)
    shown = select_entries(entries, wanted, None, _SHOWN)[:_SHOWN]
    return _page(
        request, "audit_log.html", who, entries=shown, kind=wanted.kind, subject=wanted.subject
    )
