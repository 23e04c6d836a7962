"""Who may do what (DESIGN §9), as pure data: roles, the actions each may take, and
the clinic scope a token is bound to.

Two different refusals, on purpose: an action the role may never take is ``403``
whatever the object; an object outside the token's clinic is ``404``, exactly as if
it did not exist, so a clinic cannot even learn which serials or session ids belong
to others.
"""

from dataclasses import dataclass
from enum import StrEnum
from typing import Final


class Role(StrEnum):
    MANUFACTURER = "manufacturer"
    """The fleet, service and quality teams: everything."""
    CLINIC = "clinic"
    """One clinic's staff: its devices, sessions and alerts; acknowledge and resolve."""
    AUDITOR = "auditor"
    """Read-only sessions, devices, event history, exports and verification,
    fleet-wide or for one clinic (scoped by custody exactly like the clinic)."""


class Action(StrEnum):
    READ_DEVICES = "read_devices"
    MANAGE_DEVICES = "manage_devices"
    """Register, assign to a clinic, record a service visit."""
    READ_SESSIONS = "read_sessions"
    READ_ALERTS = "read_alerts"
    HANDLE_ALERTS = "handle_alerts"
    """Acknowledge and resolve."""
    CONFIGURE_CLINIC = "configure_clinic"
    """Alert policy and webhooks."""
    AUDIT = "audit"
    """Session exports and chain verification."""
    READ_DEAD_LETTERS = "read_dead_letters"
    READ_AUDIT_LOG = "read_audit_log"
    """The record of the changes people made: policies, bounds, webhooks, identities."""
    SET_POLICY_BOUNDS = "set_policy_bounds"
    """The manufacturer's bounds on what a clinic's alert policy may say."""
    CONFIGURE_DEVICES = "configure_devices"
    """The fleet, model and device layers of desired configuration, and the bounds on
    what a clinic's layer may say."""
    SEND_COMMANDS = "send_commands"
    """Any tracked command to any device."""
    MANAGE_PEOPLE = "manage_people"
    """Named accounts and machine tokens: create, disable, reset, revoke (what
    ``coreline user`` and ``coreline token`` do on the platform's host)."""
    LOCK_DEVICES = "lock_devices"
    """The ``lock`` command to a device the clinic holds: a clinic can always make a
    handpiece it holds safer, never less safe (unlock and override are the
    manufacturer's)."""


_ALLOWED: Final[dict[Role, frozenset[Action]]] = {
    Role.MANUFACTURER: frozenset(Action),
    Role.CLINIC: frozenset(
        {
            Action.READ_DEVICES,
            Action.READ_SESSIONS,
            Action.READ_ALERTS,
            Action.HANDLE_ALERTS,
            Action.CONFIGURE_CLINIC,
            Action.AUDIT,
            Action.LOCK_DEVICES,
        }
    ),
    Role.AUDITOR: frozenset(
        {Action.READ_DEVICES, Action.READ_SESSIONS, Action.AUDIT, Action.READ_AUDIT_LOG}
    ),
}


class PrincipalKind(StrEnum):
    TOKEN = "token"  # noqa: S105 - a kind of principal, not a secret
    """A machine token from ``coreline token create``."""
    USER = "user"
    """A person signed in to the dashboard with a named account."""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request acts for: the bearer of a valid token or a signed-in person."""

    subject_id: str
    """The token id or the user id."""
    role: Role
    clinic_id: str | None
    """The one clinic this principal sees; ``None``: the whole fleet."""
    label: str
    """The token's label or the person's display name."""
    kind: PrincipalKind = PrincipalKind.TOKEN
    email: str | None = None
    """A person's login; ``None`` for a token."""

    def may(self, action: Action) -> bool:
        return action in _ALLOWED[self.role]

    def sees(self, clinic_id: str | None) -> bool:
        """Whether an object owned by ``clinic_id`` (``None``: no clinic yet) is in scope."""
        return self.clinic_id is None or clinic_id == self.clinic_id

    @property
    def author(self) -> str:
        """Recorded as the author of what the principal does: the person or the token."""
        if self.kind is PrincipalKind.USER:
            return f"{self.label} <{self.email}> ({self.role.value} user {self.subject_id})"[:200]
        return f"{self.label} ({self.role.value} token {self.subject_id})"[:200]


def scope_problem(role: Role, clinic_id: str | None) -> str | None:
    """Why a token with this role and scope cannot exist, or ``None`` when it can."""
    if role is Role.CLINIC and clinic_id is None:
        return "a clinic token needs --clinic (the clinic it belongs to)"
    if role is Role.MANUFACTURER and clinic_id is not None:
        return "a manufacturer token sees the whole fleet: leave out --clinic"
    return None
