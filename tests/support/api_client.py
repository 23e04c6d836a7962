"""The API app over a world's database, for in-process requests with ``TestClient``."""

from fastapi.testclient import TestClient

from services.api import create_app
from services.eventstore import open_event_store
from tests.support.postgres import free_port
from transport import BrokerAddress

MASTER_KEY = b"k" * 32


def api_client(database_url: str, broker_port: int | None = None) -> TestClient:
    """A client of the real app; the broker address only matters to ``/readyz``."""
    broker = BrokerAddress(host="127.0.0.1", port=broker_port or free_port())
    app = create_app(database_url, lambda: open_event_store(database_url), broker, MASTER_KEY)
    return TestClient(app, raise_server_exceptions=True)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
