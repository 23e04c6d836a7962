"""The manufacturer's bounds on clinic alert policies."""

from typing import Annotated

from fastapi import APIRouter, Depends

from services.alerts.policy_bounds import Bound, BoundsError, bounds_in_force
from services.api import policy_changes
from services.api.access import Action, Principal
from services.api.deps import Store, allowed, principal
from services.api.models import PolicyBoundIn, PolicyBoundOut, PolicyBoundsOut
from services.api.problems import ERROR_RESPONSES, forbidden, unprocessable

router = APIRouter(prefix="/policy-bounds", tags=["clinics"], responses=ERROR_RESPONSES)
BoundsSetter = Annotated[Principal, Depends(allowed(Action.SET_POLICY_BOUNDS))]


@router.get("", summary="The bounds on clinic alert policies")
def get_bounds(who: Annotated[Principal, Depends(principal)], store: Store) -> PolicyBoundsOut:
    """What a clinic's policy override must stay within; for those who set policies."""
    if not (who.may(Action.CONFIGURE_CLINIC) or who.may(Action.SET_POLICY_BOUNDS)):
        raise forbidden(f"a {who.role.value} token may not read policy bounds")
    return _out(policy_changes.recorded_bounds(store)[0])


@router.put("", summary="Set the bounds on clinic alert policies")
def set_bounds(
    who: BoundsSetter, store: Store, bounds: dict[str, PolicyBoundIn]
) -> PolicyBoundsOut:
    """Per policy key, the range (``min``, ``max``, either may be null) a clinic's
    override must stay within, e.g. ``{"coverage_max_pct": {"min": 2, "max": 15}}``.
    Keys left out keep the platform's defaults; ``{}`` restores them all.  Recorded
    as ``policy_bounds.changed``; overrides already set stay until next changed."""
    wanted = {key: Bound(bound.min, bound.max) for key, bound in bounds.items()}
    try:
        policy_changes.change_bounds(store, wanted, who.author)
    except BoundsError as error:
        raise unprocessable(str(error)) from None
    return _out(wanted)


def _out(set_by_manufacturer: dict[str, Bound]) -> PolicyBoundsOut:
    def documents(bounds: dict[str, Bound]) -> dict[str, PolicyBoundOut]:
        return {key: PolicyBoundOut(min=b.low, max=b.high) for key, b in bounds.items()}

    return PolicyBoundsOut(
        bounds=documents(bounds_in_force(set_by_manufacturer)),
        set_by_manufacturer=documents(set_by_manufacturer),
    )
