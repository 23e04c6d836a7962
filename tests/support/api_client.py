"""The API app over a world's database, for in-process requests with ``TestClient``."""

from pathlib import Path
from typing import Any

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


def walk_pages(client: TestClient, token: str, path: str, limit: int = 50) -> list[dict[str, Any]]:
    """Every item of a paged list, pages of ``limit`` following their cursors; each
    page is asserted to answer 200 and to hold no more than ``limit`` items."""
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        joiner = "&" if "?" in path else "?"
        query = f"{joiner}limit={limit}" + (f"&cursor={cursor}" if cursor else "")
        response = client.get(path + query, headers=bearer(token))
        assert response.status_code == 200, response.text
        page = response.json()
        assert len(page["items"]) <= limit
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items
