"""A signed-in person's alert e-mail: which severities they get by e-mail.

A person gets, by e-mail, the alerts they may read (their clinic's, or every
clinic's for the manufacturer) whose severity they chose here; the notifier sends
them when ``CORELINE_SMTP_HOST`` is set (docs/alerts.md).
"""

from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict

from services.api.access import Action, Principal, PrincipalKind
from services.api.deps import Context, Db, allowed
from services.api.problems import ERROR_RESPONSES, forbidden
from services.delivery.email_log import SEVERITIES, email_severities, set_email_severities

router = APIRouter(prefix="/me/notifications", tags=["notifications"], responses=ERROR_RESPONSES)

Severity = Literal["info", "warning", "critical"]


class NotificationSettings(BaseModel):
    """The alert severities the person gets by e-mail (empty: none)."""

    model_config = ConfigDict(extra="forbid")

    email_severities: list[Severity]
    email: str | None = None
    """Where they go: the person's login (read-only; ignored in a ``PUT``)."""


def _person(who: Annotated[Principal, Depends(allowed(Action.READ_ALERTS))]) -> Principal:
    """Preferences belong to a named person: a machine token has none."""
    if who.kind is not PrincipalKind.USER:
        raise forbidden("notification settings belong to a signed-in person, not a token")
    return who


Person = Annotated[Principal, Depends(_person)]


@router.get("", summary="My alert e-mail settings")
def get_notifications(who: Person, db: Db) -> NotificationSettings:
    chosen = email_severities(db, who.subject_id)
    return NotificationSettings(
        email_severities=[severity for severity in SEVERITIES if severity in chosen],
        email=who.email,
    )


@router.put("", summary="Choose my alert e-mail")
def put_notifications(
    who: Person, api: Context, body: NotificationSettings
) -> NotificationSettings:
    """Replace the choice; an empty list stops alert e-mail."""
    chosen = set_email_severities(
        api.engine, who.subject_id, body.email_severities, datetime.now(UTC)
    )
    return NotificationSettings(
        email_severities=[severity for severity in SEVERITIES if severity in chosen],
        email=who.email,
    )
