"""A request that finds the database away (a failover, a restart) is answered 503
with Retry-After, never 500, and the requests after the database returns succeed
without restarting the API."""

from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine

from services.api import Role, create_token
from services.eventstore import upgrade_schema
from tests.support.api_client import api_client, bearer
from tests.support.postgres import TemporaryPostgres


@pytest.fixture
def server() -> Iterator[TemporaryPostgres]:
    with TemporaryPostgres() as started:
        yield started


def test_the_api_answers_503_while_the_database_is_away(server: TemporaryPostgres) -> None:
    url = server.url()
    upgrade_schema(url)
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    _, token = create_token(engine, Role.MANUFACTURER, None, "away")
    engine.dispose()
    with api_client(url) as client:
        for path in ("/api/v1/devices", "/api/v1/alerts", "/api/v1/log/checkpoint"):
            assert client.get(path, headers=bearer(token)).status_code in {200, 404}
        server.stop()
        for path in ("/api/v1/devices", "/api/v1/devices/HP-000001/events"):
            away = client.get(path, headers=bearer(token))
            assert away.status_code == 503, (path, away.text)
            assert away.headers["Retry-After"] == "2"
            assert "retry" in away.json()["detail"]
        server.start()
        back = client.get("/api/v1/devices", headers=bearer(token))
        assert back.status_code == 200, back.text
