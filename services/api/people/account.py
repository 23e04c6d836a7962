"""An account as the rest of the platform sees it, read from a ``users`` row."""

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import RowMapping

from services.api.access import Principal, PrincipalKind, Role


def needs_totp(role: Role) -> bool:
    """Fleet-wide power and fleet-wide reading need a second factor; a clinic's staff
    sign in with a password alone (single sign-on can add the clinic's own factor)."""
    return role in {Role.MANUFACTURER, Role.AUDITOR}


@dataclass(frozen=True, slots=True)
class User:
    user_id: str
    email: str
    display_name: str
    role: Role
    clinic_id: str | None
    disabled: bool
    created_at: datetime
    has_totp: bool

    def principal(self) -> Principal:
        return Principal(
            subject_id=self.user_id, role=self.role, clinic_id=self.clinic_id,
            label=self.display_name, kind=PrincipalKind.USER, email=self.email,
        )  # fmt: skip


def user_from_row(row: RowMapping) -> User:
    return User(
        user_id=row["user_id"], email=row["email"], display_name=row["display_name"],
        role=Role(row["role"]), clinic_id=row["clinic_id"], disabled=bool(row["disabled"]),
        created_at=_aware(row["created_at"]) or datetime.now(UTC),
        has_totp=row["totp_sealed"] is not None,
    )  # fmt: skip


def _aware(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
