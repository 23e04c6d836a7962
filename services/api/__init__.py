"""The HTTP API and dashboard (DESIGN §9): FastAPI under ``/api/v1``, bearer tokens
with a role and a clinic scope, problem-details errors, Prometheus metrics."""

from services.api.access import Action, Principal, Role
from services.api.app import API_PREFIX, create_app
from services.api.settings import ApiSettings
from services.api.tokens import TokenError, create_token, list_tokens, revoke_token

__all__ = [
    "API_PREFIX",
    "Action",
    "ApiSettings",
    "Principal",
    "Role",
    "TokenError",
    "create_app",
    "create_token",
    "list_tokens",
    "revoke_token",
]
