"""Webhooks through the API with clinic tokens, on both databases: URLs that lead
inside the network are refused at registration, an allow-listed receiver is
registered and delivered to, a clinic's webhooks are limited, switched off, deleted,
and never touched by another clinic."""

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import sqlalchemy
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from services.api import Role, create_token
from services.delivery import (
    AlertNotice,
    AlertState,
    DeliveryState,
    DeliveryWorker,
    PostResult,
    RetryPolicy,
    WebhookRules,
    delivery_log,
    notice_poster,
)
from services.delivery.delivery_log import enqueue_deliveries
from services.delivery.moments import utc_moment
from services.egress import EgressGate, parse_allow_list
from services.eventstore import Backend, DatabaseUrl
from tests.support.api_client import MASTER_KEY, api_client, bearer
from tests.support.postgres import free_port

CLINIC_A, CLINIC_B = "clinic-a", "clinic-b"
POLICY = RetryPolicy(base_s=0.01, cap_s=0.02, max_attempts=3, timeout_s=3.0)


class Receiver:
    """A loopback HTTP server counting the POSTs it gets."""

    def __init__(self) -> None:
        self.posts: list[str] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                receiver.posts.append(self.path)
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A webhook receiver on loopback."""
    started = Receiver()
    yield started
    started.server.shutdown()
    started.server.server_close()


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> str:
    """A fresh, migrated database, once per backend."""
    url: str = request.getfixturevalue(f"{request.param}_url")
    return url


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    """An engine on the test's database."""
    database = DatabaseUrl.parse(database_url)
    url = database_url if database.backend is Backend.SQLITE else database.sqlalchemy_url
    created = sqlalchemy.create_engine(url)
    yield created
    created.dispose()


@pytest.fixture
def client(database_url: str) -> Iterator[TestClient]:
    """The real app over the database, with public-only rules and a limit of 3."""
    with api_client(database_url) as started:
        started.app.state.webhook_rules = WebhookRules(limit_per_clinic=3)  # type: ignore[attr-defined]
        yield started


def _token(engine: Engine, clinic: str) -> dict[str, str]:
    return bearer(create_token(engine, Role.CLINIC, clinic, "staff")[1])


def _hooks(clinic: str) -> str:
    return f"/api/v1/clinics/{clinic}/webhooks"


def _notice(event_id: str) -> AlertNotice:
    return AlertNotice(
        alert_id="a-1", device_id="HP-000123", clinic_id=CLINIC_A, rule="device_fault",
        subject="E-VAC-LOW", severity="critical", state=AlertState.RAISED,
        message="vacuum low", at="2026-11-24T09:00:02.000Z", event_id=event_id, seq=1,
    )  # fmt: skip


def _enqueue(engine: Engine, event_id: str) -> int:
    with engine.begin() as connection:
        return enqueue_deliveries(connection, [_notice(event_id)], utc_moment(time.time()))


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1:5432/", "127.0.0.1 is a loopback address"),
        ("http://[::1]/", "::1 is a loopback address"),
        ("http://2130706433/", "2130706433 is 127.0.0.1, a loopback address"),
        ("http://169.254.169.254/latest/meta-data/", "a cloud metadata address"),
        ("http://localhost:8000/api/v1/", "localhost names this machine"),
        ("http://[::ffff:127.0.0.1]/", "IPv4-mapped form of 127.0.0.1"),
    ],
)
def test_a_url_into_the_network_is_refused_at_registration(
    client: TestClient, engine: Engine, url: str, reason: str
) -> None:
    """422 naming why, and no webhook is made."""
    headers = _token(engine, CLINIC_A)
    answer = client.post(_hooks(CLINIC_A), headers=headers, json={"url": url})
    assert answer.status_code == 422, answer.text
    assert "refused by the egress policy" in answer.json()["detail"]
    assert reason in answer.json()["detail"]
    assert client.get(_hooks(CLINIC_A), headers=headers).json() == []


def test_an_allow_listed_receiver_is_registered_and_delivered_to(
    client: TestClient, engine: Engine, receiver: Receiver
) -> None:
    """With loopback on the operator's allow-list, the same URL registers (201) and the
    worker delivers to it; refused again once the allow-list no longer names it."""
    allow = WebhookRules(EgressGate(parse_allow_list("127.0.0.1/32")))
    client.app.state.webhook_rules = allow  # type: ignore[attr-defined]
    headers = _token(engine, CLINIC_A)
    created = client.post(_hooks(CLINIC_A), headers=headers, json={"url": receiver.url + "/in"})
    assert created.status_code == 201, created.text

    _enqueue(engine, "e-1")
    worker = DeliveryWorker(engine, MASTER_KEY, POLICY, post=notice_poster(allow.egress))
    assert worker.deliver_due() == 1
    assert receiver.posts == ["/in"]

    _enqueue(engine, "e-2")
    strict = DeliveryWorker(engine, MASTER_KEY, POLICY, post=notice_poster(EgressGate()))
    assert strict.deliver_due() == 1
    record = delivery_log(engine, event_id="e-2")[0]
    assert (record.state, record.last_error, record.attempts) == (
        DeliveryState.FAILED, "refused: egress policy", 1,
    )  # fmt: skip
    assert receiver.posts == ["/in"]


def test_a_clinic_has_at_most_the_limit_of_webhooks(client: TestClient, engine: Engine) -> None:
    """The fourth webhook of a clinic limited to three is refused with 409; deleting
    one makes room, and another clinic's count is its own."""
    headers = _token(engine, CLINIC_A)
    made = [
        client.post(_hooks(CLINIC_A), headers=headers, json={"url": f"https://h{n}.test/"})
        for n in range(4)
    ]
    assert [answer.status_code for answer in made] == [201, 201, 201, 409]
    assert "already has 3 webhooks" in made[3].json()["detail"]
    first = made[0].json()["id"]
    assert client.delete(f"{_hooks(CLINIC_A)}/{first}", headers=headers).status_code == 204
    again = client.post(_hooks(CLINIC_A), headers=headers, json={"url": "https://h9.test/"})
    assert again.status_code == 201
    other = client.post(
        _hooks(CLINIC_B), headers=_token(engine, CLINIC_B), json={"url": "https://b.test/"}
    )
    assert other.status_code == 201


def test_a_switched_off_webhook_gets_nothing_until_switched_on(
    client: TestClient, engine: Engine
) -> None:
    """PATCH active=false: no new deliveries are enqueued for it and a pending one
    waits; active=true lets the pending one go."""
    headers = _token(engine, CLINIC_A)
    hook = client.post(_hooks(CLINIC_A), headers=headers, json={"url": "https://a.test/"})
    hook_id = hook.json()["id"]
    assert _enqueue(engine, "e-1") == 1
    off = client.patch(f"{_hooks(CLINIC_A)}/{hook_id}", headers=headers, json={"active": False})
    assert off.status_code == 200
    assert off.json()["active"] is False
    assert _enqueue(engine, "e-2") == 0
    sent: list[str] = []

    def post(url: str, *_: object) -> PostResult:
        sent.append(url)
        return PostResult(204)

    worker = DeliveryWorker(engine, MASTER_KEY, POLICY, post=post)
    assert worker.deliver_due() == 0
    on = client.patch(f"{_hooks(CLINIC_A)}/{hook_id}", headers=headers, json={"active": True})
    assert on.json()["active"] is True
    assert worker.deliver_due() == 1
    assert sent == ["https://a.test/"]


def test_a_deleted_webhook_is_gone_but_its_log_stays(client: TestClient, engine: Engine) -> None:
    """DELETE: 204; it leaves the list, its pending deliveries are cancelled (kept in
    the log), nothing more is enqueued or sent, and it cannot be changed again."""
    headers = _token(engine, CLINIC_A)
    hook_id = client.post(
        _hooks(CLINIC_A), headers=headers, json={"url": "https://a.test/"}
    ).json()["id"]
    _enqueue(engine, "e-1")
    path = f"{_hooks(CLINIC_A)}/{hook_id}"
    assert client.delete(path, headers=headers).status_code == 204
    assert client.get(_hooks(CLINIC_A), headers=headers).json() == []
    assert [(r.state, r.last_error) for r in delivery_log(engine, webhook_id=hook_id)] == [
        (DeliveryState.CANCELLED, "webhook deleted")
    ]
    assert _enqueue(engine, "e-2") == 0
    assert client.delete(path, headers=headers).status_code == 404
    assert client.patch(path, headers=headers, json={"active": True}).status_code == 404
    assert client.post(f"{path}/rotate", headers=headers).status_code == 404


def test_another_clinic_cannot_touch_a_clinics_webhooks(client: TestClient, engine: Engine) -> None:
    """Clinic B gets 404 for clinic A's webhook through either clinic's path, and the
    webhook stays as it was."""
    as_a, as_b = _token(engine, CLINIC_A), _token(engine, CLINIC_B)
    hook_id = client.post(_hooks(CLINIC_A), headers=as_a, json={"url": "https://a.test/"}).json()[
        "id"
    ]
    for clinic in (CLINIC_A, CLINIC_B):
        path = f"{_hooks(clinic)}/{hook_id}"
        assert client.patch(path, headers=as_b, json={"active": False}).status_code == 404
        assert client.delete(path, headers=as_b).status_code == 404
    listed = client.get(_hooks(CLINIC_A), headers=as_a).json()
    assert [(hook["id"], hook["active"]) for hook in listed] == [(hook_id, True)]
