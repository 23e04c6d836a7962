"""The clinic policy, bounds, webhook, and people and token screens, as one router the
dashboard includes (``install_dashboard``)."""

from fastapi import APIRouter

from services.api.dashboard import (
    management_bounds,
    management_people,
    management_policies,
    management_webhooks,
)

management_router = APIRouter(include_in_schema=False)
for screens in (management_policies, management_bounds, management_webhooks, management_people):
    management_router.include_router(screens.router)
