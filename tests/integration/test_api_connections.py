"""A request borrows one read-model connection: the token lookup and the handler's
reads share it, and a token revoked meanwhile is still refused on the next request."""

from typing import Any

from sqlalchemy import event

from services.api import list_tokens, revoke_token
from tests.support.api_client import api_client, bearer
from tests.support.api_world import build_world


def test_a_request_checks_out_one_connection_and_revocation_still_bites(store_url: str) -> None:
    """A device detail and a session page each check one connection out of the pool
    (the token lookup and the read share it); revoking the token refuses the next
    request at once, so nothing about the token is kept between requests."""
    world = build_world(store_url, hours=2.0)
    with api_client(world.database_url) as client:
        engine = client.app.state.context.engine  # type: ignore[attr-defined]
        checkouts: list[object] = []

        def counted(*_: Any) -> None:
            checkouts.append(object())

        headers = bearer(world.tokens["manufacturer"])
        assert client.get("/api/v1/devices/HP-000101", headers=headers).status_code == 200
        event.listen(engine, "checkout", counted)
        try:
            for path in ("/api/v1/devices/HP-000101", "/api/v1/sessions?limit=5"):
                before = len(checkouts)
                assert client.get(path, headers=headers).status_code == 200
                assert len(checkouts) - before == 1, path
        finally:
            event.remove(engine, "checkout", counted)
        manufacturer = next(t for t in list_tokens(engine) if t.label == "manufacturer")
        revoke_token(engine, manufacturer.token_id)
        refused = client.get("/api/v1/devices/HP-000101", headers=headers)
        assert refused.status_code == 401
        assert "revoked" in refused.json()["detail"]
