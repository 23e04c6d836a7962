"""The API and dashboard application (DESIGN §9)."""

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Final

from fastapi import APIRouter, FastAPI
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import Response

from services.api.dashboard.routes import install_dashboard
from services.api.deps import ApiContext
from services.api.metrics import record_request
from services.api.problems import install_problem_handlers
from services.api.routes import alerts, audit, clinics, devices, operations, sessions
from services.api.store_pool import StorePool
from services.eventstore import EventStore
from services.projections.read_store import ReadModelStore
from transport import BrokerAddress

API_PREFIX: Final = "/api/v1"


def create_app(
    database_url: str,
    open_store: Callable[[], EventStore],
    broker: BrokerAddress,
    master_key: bytes | None = None,
    *,
    secure_cookies: bool = False,
) -> FastAPI:
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
        docs_url=f"{API_PREFIX}/docs",
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.context = ApiContext(engine, stores, broker, master_key)
    install_problem_handlers(app)
    app.middleware("http")(record_request)
    api = APIRouter(prefix=API_PREFIX)
    for module in (devices, sessions, alerts, clinics, audit, operations):
        api.include_router(module.router)
    app.include_router(api)
    app.include_router(operations.health)
    app.add_route("/metrics", _metrics, include_in_schema=False)
    install_dashboard(app, secure_cookies=secure_cookies)
    return app


def _metrics(_: Request) -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
