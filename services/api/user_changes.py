"""Accounts created and changed by ``coreline user``, each change recorded as a
platform event in the account's own stream (``identity:user:{id}``) naming the
operator who made it.  Never a password or a TOTP secret: the events have no field
for either.

Disabling, enabling, a password reset and a role change are recorded first, then
applied; each apply is harmless to repeat, so a failure after the record heals on a
retry and no change is applied unrecorded.  An account's id exists only once its row
is written, so creation writes the row, then records it; if the record cannot be
written the account is disabled again before its password has reached anyone, and
the command fails.
"""

from sqlalchemy import Engine

from schemas.streams import user_stream
from services.api.access import Role, scope_problem
from services.api.commands import ChangeRecordError, record_change
from services.api.people import User, UserError, find_user, set_disabled
from services.eventstore import EventStore, EventStoreError


def record_user_created(store: EventStore, engine: Engine, user: User, author: str) -> None:
    data = {
        "user_id": user.user_id,
        "email": user.email,
        "role": user.role.value,
        "clinic_id": user.clinic_id,
    }
    try:
        record_change(store, user_stream(user.user_id), "user.created", data, author)
    except EventStoreError as error:
        set_disabled(engine, user.email, disabled=True)
        raise UserError(f"the account could not be recorded ({error}); it was disabled") from error


def record_user_change(
    store: EventStore,
    engine: Engine,
    email: str,
    kind: str,
    author: str,
    role: tuple[Role, str | None] | None = None,
) -> None:
    """Record ``kind`` (``user.disabled``, ``user.enabled``, ``user.password_reset``,
    or ``user.role_changed`` with the new ``role`` and clinic) for the account
    ``email`` names, before the change is applied."""
    user = find_user(engine, email)
    if user is None:
        raise UserError(f"no account {email!r} (see `coreline user list`)")
    data: dict[str, object] = {"user_id": user.user_id}
    if role is not None:
        new_role, clinic_id = role
        problem = scope_problem(new_role, clinic_id)
        if problem:  # refused before anything is recorded
            raise UserError(problem)
        data |= {
            "role": new_role.value,
            "clinic_id": clinic_id,
            "previous_role": user.role.value,
            "previous_clinic_id": user.clinic_id,
        }
    try:
        record_change(store, user_stream(user.user_id), kind, data, author)
    except ChangeRecordError as error:  # e.g. a clinic id no clinic can have
        raise UserError(str(error)) from None
