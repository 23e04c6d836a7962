"""The API and dashboard application (DESIGN §9).

Every request passes one middleware (``services/api/front.py``): the request bounds
(size, time, a credential where one is needed) before any handler reads a byte of
the body, security headers on whatever answers, and the request metrics.  ``/metrics`` itself is not
served here but on a listener of its own (``coreline api --metrics-port``).
"""

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Final

from fastapi import APIRouter, FastAPI

from services.api.api_docs import install_api_docs
from services.api.dashboard import telemetry_pages
from services.api.dashboard.routes import install_dashboard, viewer
from services.api.dashboard.sign_in import install_sign_in
from services.api.deps import SESSION_COOKIE, ApiContext, principal
from services.api.front import Front
from services.api.identity import IdentityConfig, identity_config
from services.api.limits import CredentialChecks, RequestLimits
from services.api.people import People, PeopleConfig, people_config
from services.api.problems import install_problem_handlers
from services.api.routes import (
    alerts,
    audit,
    audit_log,
    clinics,
    device_commands,
    device_config,
    device_identity,
    device_keys,
    devices,
    enrolment,
    notifications,
    operations,
    policy_bounds,
    sessions,
    telemetry,
    transparency_log,
    webhooks,
)
from services.api.store_pool import StorePool
from services.eventstore import EventStore
from services.projections.read_store import ReadModelStore
from services.settings import LogKeyPlace, log_key_path
from transport import BrokerAddress

API_PREFIX: Final = "/api/v1"


def create_app(  # noqa: PLR0913 - the composition root takes each collaborator
    database_url: str,
    open_store: Callable[[], EventStore],
    broker: BrokerAddress,
    master_key: bytes | None = None,
    *,
    secure_cookies: bool = False,
    limits: RequestLimits | None = None,
    people: PeopleConfig | None = None,
    log_key: LogKeyPlace | None = None,
    identity: IdentityConfig | None = None,
) -> FastAPI:
    """``people`` defaults to the ``CORELINE_SECRET_KEY`` and ``CORELINE_OIDC_*``
    settings (``services/api/people/settings.py``); ``log_key`` to the place
    ``coreline db upgrade`` puts the log's key for ``database_url``; ``identity`` to
    the ``CORELINE_FLEET_CA_*`` settings (``services/api/identity/settings.py``)."""
    people = people or people_config(master_key)
    read_models = ReadModelStore(database_url)  # creates the read tables when missing
    engine = read_models.engine
    stores = StorePool(open_store)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        stores.close()
        read_models.close()

    app = FastAPI(
        title="Coreline API",
        version="1.0",
        summary="Fleet, usage, alerts and session audits of dermal micro-coring handpieces.",
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=None,  # install_api_docs serves it from vendored files
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.context = ApiContext(
        engine, stores, broker, master_key, People.build(engine, people),
        log_key or LogKeyPlace(log_key_path(database_url)),
    )  # fmt: skip
    app.state.identity = identity or identity_config(database_url)
    install_problem_handlers(app)
    checks = CredentialChecks(
        bearer=frozenset({principal}), session=frozenset({viewer}), session_cookie=SESSION_COOKIE
    )
    app.add_middleware(Front, https=secure_cookies, limits=limits or RequestLimits(), checks=checks)
    api = APIRouter(prefix=API_PREFIX)
    for module in (
        devices,
        sessions,
        alerts,
        clinics,
        webhooks,
        audit,
        operations,
        audit_log,
        policy_bounds,
        transparency_log,
        device_keys,
        device_config,
        device_commands,
        enrolment,
        device_identity,
        telemetry,
        notifications,
    ):
        api.include_router(module.router)
    app.include_router(api)
    app.include_router(operations.health)
    install_api_docs(app, f"{API_PREFIX}/openapi.json")
    install_sign_in(app)
    install_dashboard(app, secure_cookies=secure_cookies)
    app.include_router(telemetry_pages.router)
    return app
