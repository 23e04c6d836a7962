"""A clinic's alert policy (its webhooks: ``routes.webhooks``)."""

from typing import Annotated, Any

from fastapi import APIRouter, Path

from schemas.fields import CLINIC_ID_PATTERN
from services.alerts import store as alert_store
from services.alerts.policy import AlertPolicy, PolicyError
from services.api.access import Principal
from services.api.deps import ClinicConfigurer, Context, Store
from services.api.models import PolicyOut
from services.api.policy_changes import change_policy
from services.api.problems import ERROR_RESPONSES, not_found, unprocessable

router = APIRouter(prefix="/clinics/{clinic_id}", tags=["clinics"], responses=ERROR_RESPONSES)
ClinicPath = Annotated[str, Path(pattern=CLINIC_ID_PATTERN, examples=["clinic-7"])]


@router.get("/policy", summary="A clinic's alert policy")
def get_policy(who: ClinicConfigurer, api: Context, clinic_id: ClinicPath) -> PolicyOut:
    _in_scope(who, clinic_id)
    overrides = alert_store.policy_overrides(api.engine, clinic_id)
    return _policy(clinic_id, overrides)


@router.put("/policy", summary="Set a clinic's alert policy")
def set_policy(
    who: ClinicConfigurer,
    api: Context,
    store: Store,
    clinic_id: ClinicPath,
    overrides: dict[str, float | str],
) -> PolicyOut:
    """Overrides of DESIGN §7's defaults, e.g. ``{"coverage_max_pct": 6}``; ``{}``
    restores the defaults; ``time_zone`` (an IANA name, ``"Europe/Berlin"``) is the
    zone the clinic's dashboard shows times in.  Each must stay within the manufacturer's bounds
    (``/policy-bounds``).  Recorded as ``policy.changed`` with its author and the
    previous overrides; applies to what the engine decides from now on."""
    _in_scope(who, clinic_id)
    for key, value in overrides.items():
        # Only the zone is a name; a number sent as text is a mistake, not a number.
        if isinstance(value, str) != (key == "time_zone"):
            raise unprocessable(
                f"{key}: {'an IANA zone name' if key == 'time_zone' else 'a number'} expected"
            )
    try:
        change_policy(store, api.engine, clinic_id, overrides, who.author)
    except PolicyError as error:
        raise unprocessable(str(error)) from None
    return _policy(clinic_id, overrides)


def _in_scope(who: Principal, clinic_id: str) -> None:
    if not who.sees(clinic_id):
        raise not_found("clinic")


def _policy(clinic_id: str, overrides: dict[str, Any]) -> PolicyOut:
    effective = AlertPolicy.with_overrides(overrides).model_dump()
    return PolicyOut(clinic_id=clinic_id, overrides=overrides, effective=effective)
