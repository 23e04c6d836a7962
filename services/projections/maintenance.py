"""Maintenance status of a handpiece (DESIGN §6) from its folded facts.

A device can need several things at once; ``maintenance_attention`` lists them all,
most urgent first, and the headline status is the first (``ok`` when none).  The
order puts what stops treatment now before what can wait: an integrity incident
first (the store refused events sent under the device's id, so another board may be
using it, and nothing else the device shows can be taken at its word until a person
has looked: DESIGN §4.2), then a device that is offline (it may be in any state), a
fault that holds the actuator, an exhausted cartridge that must come out before the
next actuation, a low one within the session, and a service visit due within
thousands of actuations.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from schemas import Severity
from services.projections.cartridge import CartridgeTally, life_reached


class MaintenanceStatus(StrEnum):
    INTEGRITY = "integrity"
    OFFLINE = "offline"
    FAULT = "fault"
    CARTRIDGE_EXHAUSTED = "cartridge_exhausted"
    CARTRIDGE_LOW = "cartridge_low"
    SERVICE_DUE = "service_due"
    OK = "ok"


DEFAULT_SERVICE_INTERVAL = 250_000
"""Actuations between actuator services (DESIGN §7 default)."""


@dataclass(frozen=True, slots=True)
class MaintenancePolicy:
    """Thresholds, defaulting to DESIGN §7; a clinic's policy may override them."""

    cartridge_low_pct: float = 80.0
    cartridge_exhausted_pct: float = 95.0
    service_interval: int = DEFAULT_SERVICE_INTERVAL
    service_due_fraction: float = 0.9

    def service_due(self, actuations_since_service: int) -> bool:
        return actuations_since_service >= self.service_interval * self.service_due_fraction


DEFAULT_POLICY = MaintenancePolicy()

_HOLDING_SEVERITIES = frozenset({Severity.WARNING, Severity.CRITICAL})
"""Fault severities that count as a fault status; ``info`` ones do not."""


def maintenance_attention(
    *,
    cartridge: CartridgeTally | None,
    fault_severities: Iterable[Severity],
    actuations_since_service: int,
    online: bool | None,
    integrity_incident: bool = False,
    policy: MaintenancePolicy = DEFAULT_POLICY,
) -> tuple[MaintenanceStatus, ...]:
    """Every status other than ``ok`` that applies, most urgent first.

    ``online`` comes from presence and a clock, which the fold has neither of:
    ``None`` (unknown) adds nothing, ``False`` adds ``offline``.  ``integrity_incident``
    is an incident over refused events that no person has resolved yet.
    """
    attention: list[MaintenanceStatus] = []
    if integrity_incident:
        attention.append(MaintenanceStatus.INTEGRITY)
    if online is False:
        attention.append(MaintenanceStatus.OFFLINE)
    if any(severity in _HOLDING_SEVERITIES for severity in fault_severities):
        attention.append(MaintenanceStatus.FAULT)
    if cartridge is not None:
        used, rated, wear = cartridge.actuations, cartridge.rated_actuations, cartridge.wear_pct
        if used > rated or life_reached(used, rated, wear, policy.cartridge_exhausted_pct):
            attention.append(MaintenanceStatus.CARTRIDGE_EXHAUSTED)
        elif life_reached(used, rated, wear, policy.cartridge_low_pct):
            attention.append(MaintenanceStatus.CARTRIDGE_LOW)
    if policy.service_due(actuations_since_service):
        attention.append(MaintenanceStatus.SERVICE_DUE)
    return tuple(attention)


def headline_status(attention: tuple[MaintenanceStatus, ...]) -> MaintenanceStatus:
    return attention[0] if attention else MaintenanceStatus.OK
