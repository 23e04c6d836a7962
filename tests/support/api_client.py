"""The API app over a world's database, for in-process requests with ``TestClient``."""

from pathlib import Path

from fastapi.testclient import TestClient

from services.api import create_app
from services.eventstore import open_event_store
from services.settings import LogKeyPlace, log_key_path
from tests.support.postgres import free_port
from transport import BrokerAddress

MASTER_KEY = b"k" * 32


def api_client(
    database_url: str, broker_port: int | None = None, log_key: Path | None = None
) -> TestClient:
    """A client of the real app; the broker address only matters to ``/readyz``;
    ``log_key``: the transparency log's key (default: beside a SQLite file)."""
    broker = BrokerAddress(host="127.0.0.1", port=broker_port or free_port())
    app = create_app(
        database_url, lambda: open_event_store(database_url), broker, MASTER_KEY,
        log_key=LogKeyPlace(log_key_path(database_url, log_key)),
    )  # fmt: skip
    return TestClient(app, raise_server_exceptions=True)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
