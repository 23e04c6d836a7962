"""Alert delivery end to end, over a real store (SQLite and PostgreSQL), a real
Mosquitto and a real HTTP receiver: every alert state change reaches the clinic's
MQTT topic in order and its webhooks signed, retried with backoff and logged."""

import http.server
import itertools
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest

from schemas import GENESIS_HASH, SealedEvent, clinic_alerts_topic, seal
from schemas.streams import alert_stream
from services.delivery import (
    NOTIFIER,
    DeliveryState,
    Notifier,
    NotifierOptions,
    RetryPolicy,
    WebhookRules,
    create_webhook,
    delivery_log,
    verify_signature,
)
from services.egress import EgressGate, parse_allow_list
from services.eventstore import (
    Cursor,
    EventStore,
    load_checkpoint,
    save_checkpoint,
)
from services.projections.read_store import ReadModelStore
from tests.support.mosquitto import TemporaryMosquitto
from tests.support.postgres import free_port
from tests.support.streams import device_stream, event_fields
from tests.support.subscriber import RecordingSubscriber
from transport import BrokerAddress

MASTER_KEY = b"integration-master-key-0123456789abcdef"
POLICY = RetryPolicy(base_s=0.2, cap_s=2.0, max_attempts=4, timeout_s=5.0)
LOOPBACK = WebhookRules(EgressGate(parse_allow_list("127.0.0.1/32")))
"""The receivers here listen on loopback, which only the allow-list admits."""
FLAKY_FAILURES = 2


@dataclass(frozen=True, slots=True)
class Received:
    path: str
    event_id: str
    body: bytes
    verified: bool
    at: float


@dataclass
class Receiver:
    """Answers ``/flaky`` with 500 for the first two attempts of each notice, then
    200, and ``/down`` always with 503; checks every signature it gets."""

    port: int = 0
    secrets: dict[str, str] = field(default_factory=dict)
    requests: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def received(self, path: str, event_id: str | None = None) -> list[Received]:
        with self.lock:
            return [
                r for r in self.requests
                if r.path == path and (event_id is None or r.event_id == event_id)
            ]  # fmt: skip

    def answer(self, path: str, headers: Any, body: bytes) -> int:
        event_id = headers.get("X-Coreline-Event", "")
        verified = verify_signature(
            self.secrets.get(path, ""), headers.get("X-Coreline-Timestamp", ""), body,
            headers.get("X-Coreline-Signature", ""), now=time.time(),
        )  # fmt: skip
        with self.lock:
            self.requests.append(Received(path, event_id, body, verified, time.monotonic()))
            earlier = sum(1 for r in self.requests if (r.path, r.event_id) == (path, event_id))
        if not verified:
            return 401
        if path == "/flaky":
            return 500 if earlier <= FLAKY_FAILURES else 200
        return 503


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A real HTTP server on loopback, in a thread, recording every webhook request."""
    state = Receiver()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            status = state.answer(self.path, self.headers, body)
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.fixture(scope="module")
def broker() -> Iterator[TemporaryMosquitto]:
    """A real Mosquitto on loopback."""
    with TemporaryMosquitto() as mosquitto:
        yield mosquitto


def alert_events(alert_id: str, clinic_id: str | None) -> list[SealedEvent]:
    """An alert's whole life: raised, acknowledged, resolved, chained in its stream."""
    steps: list[tuple[str, dict[str, Any]]] = [
        ("alert.raised", {
            "alert_id": alert_id, "rule": "device_fault", "subject": "E-VAC-LOW",
            "severity": "critical", "clinic_id": clinic_id, "message": "vacuum low",
            "context": {"fault_code": "E-VAC-LOW"},
        }),
        ("alert.acknowledged", {"alert_id": alert_id, "by": "nurse-4", "note": "on it"}),
        ("alert.resolved", {"alert_id": alert_id, "by": "engine", "note": None}),
    ]  # fmt: skip
    events, prev_hash = [], GENESIS_HASH
    for seq, (kind, data) in enumerate(steps, start=1):
        fields = event_fields("HP-000123", seq, prev_hash, kind, data)
        fields["event_id"] = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{alert_id}:{seq}"))
        sealed = seal(fields, alert_stream(alert_id))
        events.append(sealed)
        prev_hash = sealed.hash
    return events


def _wait_until(condition: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    assert condition(), "timed out"


def _notices(subscriber: RecordingSubscriber) -> list[dict[str, Any]]:
    return [orjson.loads(payload) for _, payload in list(subscriber.messages)]


@pytest.mark.slow
def test_state_changes_reach_mqtt_in_order_and_webhooks_signed_with_retries(
    store: EventStore, database: ReadModelStore, broker: TemporaryMosquitto, receiver: Receiver
) -> None:
    """Raised, acknowledged, resolved reach the clinic's topic in order; a flaky
    webhook gets each notice signed, after two failures and growing pauses; a dead
    one is given up after the bounded attempts; nothing reaches other clinics."""
    flaky_id, receiver.secrets["/flaky"] = create_webhook(
        database.engine, MASTER_KEY, "clinic-a", receiver.url("/flaky"), LOOPBACK
    )
    down_id, receiver.secrets["/down"] = create_webhook(
        database.engine, MASTER_KEY, "clinic-a", receiver.url("/down"), LOOPBACK
    )
    create_webhook(database.engine, MASTER_KEY, "clinic-b", receiver.url("/other"), LOOPBACK)
    alert = alert_events(str(uuid.uuid4()), "clinic-a")
    unowned = alert_events(str(uuid.uuid4()), None)
    store.append(device_stream("HP-000123", 5))  # not an alert stream: passed over
    store.append(alert[:1] + unowned)

    options = NotifierOptions(
        policy=POLICY, client_id=f"notifier-{uuid.uuid4().hex[:8]}", egress=LOOPBACK.egress
    )
    notifier = Notifier(
        store, database.engine, BrokerAddress.parse(broker.url), MASTER_KEY, options
    )
    stop = threading.Event()
    with (
        RecordingSubscriber(broker.port, clinic_alerts_topic("clinic-a"), "clinic-a") as clinic,
        RecordingSubscriber(broker.port, clinic_alerts_topic("+"), "all-clinics") as everyone,
    ):
        runner = threading.Thread(target=notifier.run, args=(stop, 0.1), daemon=True)
        runner.start()
        try:
            _wait_until(lambda: len(clinic.messages) >= 1)
            raised_published = time.monotonic()
            store.append(alert[1:2])
            _wait_until(lambda: len(clinic.messages) >= 2)
            store.append(alert[2:])
            _wait_until(lambda: len(clinic.messages) >= 3)
            event_ids = [str(event.event_id) for event in alert]
            _wait_until(lambda: _settled(database, [flaky_id, down_id], len(event_ids)))
        finally:
            stop.set()
            runner.join(timeout=30)
        assert not runner.is_alive()

        notices = _notices(clinic)
        assert [n["state"] for n in notices] == ["raised", "acknowledged", "resolved"]
        assert [n["event_id"] for n in notices] == event_ids
        assert {n["clinic_id"] for n in notices} == {"clinic-a"}
        assert [n["seq"] for n in notices] == [1, 2, 3]
        assert _notices(everyone) == notices  # the unowned alert went nowhere on MQTT

    # Enqueueing wakes the sender: the first attempt does not wait for its idle poll.
    assert receiver.received("/flaky", event_ids[0])[0].at - raised_published < 2.0
    _assert_requests(receiver, notices)
    flaky_log = delivery_log(database.engine, webhook_id=flaky_id)
    assert {(r.event_id, r.state, r.attempts, r.last_status) for r in flaky_log} == {
        (event_id, DeliveryState.DELIVERED, 3, 200) for event_id in event_ids
    }
    down_log = delivery_log(database.engine, webhook_id=down_id)
    assert {(r.event_id, r.state, r.attempts, r.last_status) for r in down_log} == {
        (event_id, DeliveryState.FAILED, POLICY.max_attempts, 503) for event_id in event_ids
    }
    time.sleep(POLICY.cap_s)
    assert len(receiver.received("/down")) == POLICY.max_attempts * len(event_ids)


def _assert_requests(receiver: Receiver, notices: list[dict[str, Any]]) -> None:
    """Per notice: the flaky webhook got it three times, signed, with growing pauses;
    the dead one exactly ``max_attempts`` times; the other clinic's never."""
    for notice in notices:
        flaky = receiver.received("/flaky", notice["event_id"])
        assert len(flaky) == FLAKY_FAILURES + 1
        assert all(r.verified for r in flaky)
        assert all(orjson.loads(r.body) == notice for r in flaky)
        _assert_backoff([r.at for r in flaky])
        down = receiver.received("/down", notice["event_id"])
        assert len(down) == POLICY.max_attempts
        _assert_backoff([r.at for r in down])
    assert receiver.received("/other") == []


def _settled(database: ReadModelStore, webhook_ids: list[str], notices: int) -> bool:
    records = [r for w in webhook_ids for r in delivery_log(database.engine, webhook_id=w)]
    return len(records) == notices * len(webhook_ids) and all(
        r.state is not DeliveryState.PENDING for r in records
    )


def _assert_backoff(arrivals: list[float]) -> None:
    """Pause n (after the n-th failure) lasts at least half of base·2^(n-1)."""
    for failures, (earlier, later) in enumerate(itertools.pairwise(arrivals), 1):
        floor = min(POLICY.cap_s, POLICY.base_s * 2 ** (failures - 1)) / 2
        assert later - earlier >= floor - 0.01, (failures, later - earlier)


def test_reprocessing_a_batch_enqueues_nothing_twice(
    store: EventStore, database: ReadModelStore, broker: TemporaryMosquitto
) -> None:
    """A batch handled again (as after a crash before its checkpoint moved) publishes
    its notices again, same event ids, but adds no webhook delivery."""
    create_webhook(database.engine, MASTER_KEY, "clinic-a", "http://127.0.0.1:9/hook", LOOPBACK)
    alert = alert_events(str(uuid.uuid4()), "clinic-a")
    store.append(alert)
    options = NotifierOptions(
        policy=POLICY, client_id=f"notifier-{uuid.uuid4().hex[:8]}", egress=LOOPBACK.egress
    )
    notifier = Notifier(
        store, database.engine, BrokerAddress.parse(broker.url), MASTER_KEY, options
    )
    with RecordingSubscriber(broker.port, clinic_alerts_topic("clinic-a"), "replayed") as clinic:
        try:
            assert notifier.step() == 3
            first_log = delivery_log(database.engine)
            with database.engine.begin() as connection:
                save_checkpoint(connection, NOTIFIER, Cursor.START)
            assert notifier.step() == 3
            assert notifier.step() == 0
        finally:
            notifier.close()
        _wait_until(lambda: len(clinic.messages) == 6)
    assert [r.id for r in delivery_log(database.engine)] == [r.id for r in first_log]
    assert len(first_log) == 3
    notices = _notices(clinic)
    assert [n["event_id"] for n in notices[3:]] == [n["event_id"] for n in notices[:3]]


def test_the_checkpoint_waits_for_the_broker(store: EventStore, database: ReadModelStore) -> None:
    """Without PUBACKs (no broker) the batch is not recorded: no checkpoint move, no
    deliveries enqueued; it is tried again later."""
    create_webhook(database.engine, MASTER_KEY, "clinic-a", "http://127.0.0.1:9/hook", LOOPBACK)
    store.append(alert_events(str(uuid.uuid4()), "clinic-a"))
    nowhere = BrokerAddress("127.0.0.1", free_port())
    options = NotifierOptions(
        policy=POLICY, ack_timeout_s=0.3, client_id="notifier-alone", egress=LOOPBACK.egress
    )
    notifier = Notifier(store, database.engine, nowhere, MASTER_KEY, options)
    try:
        assert notifier.step() == 0
        assert notifier.step() == 0
    finally:
        notifier.close()
    with database.engine.connect() as connection:
        assert load_checkpoint(connection, NOTIFIER) == Cursor.START
    assert delivery_log(database.engine) == []
