"""The delivery worker against a delivery log in SQLite, with a fake clock and a fake
receiver at its HTTP port: attempt bounds, backoff, secrets, idempotent enqueueing."""

from collections.abc import Iterator, Mapping
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy
from sqlalchemy import Engine

from services.delivery import (
    AlertNotice,
    AlertState,
    DeliveryState,
    DeliveryWorker,
    PostResult,
    RetryPolicy,
    create_webhook,
    delivery_log,
    derive_secret,
    rotate_secret,
    set_webhook_active,
    verify_signature,
)
from services.delivery.delivery_log import claim_attempt, due_deliveries, enqueue_deliveries
from services.delivery.moments import utc_moment
from services.eventstore import upgrade_schema

MASTER_KEY = b"m" * 32
POLICY = RetryPolicy(base_s=1.0, cap_s=60.0, max_attempts=4, timeout_s=5.0)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_764_000_000.0

    def __call__(self) -> float:
        return self.now


class FakeReceiver:
    """Answers each POST with the next scripted status (the last one repeats)."""

    def __init__(self, *statuses: int) -> None:
        self.statuses = list(statuses)
        self.requests: list[tuple[str, bytes, dict[str, str]]] = []

    def __call__(
        self, url: str, body: bytes, headers: Mapping[str, str], _timeout_s: float
    ) -> PostResult:
        self.requests.append((url, body, dict(headers)))
        status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
        return PostResult(status)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    """A fresh SQLite database holding the delivery tables (made by ``db upgrade``)."""
    url = f"sqlite:///{tmp_path / 'delivery.db'}"
    upgrade_schema(url)
    created = sqlalchemy.create_engine(url)
    yield created
    created.dispose()


def _notice(event_id: str = "e-1", clinic_id: str = "clinic-a") -> AlertNotice:
    return AlertNotice(
        alert_id="a-1", device_id="HP-000123", clinic_id=clinic_id, rule="device_fault",
        subject="E-VAC-LOW", severity="critical", state=AlertState.RAISED,
        message="vacuum low", at="2026-11-24T09:00:02.000Z", event_id=event_id, seq=1,
    )  # fmt: skip


def _enqueue(engine: Engine, clock: FakeClock, *notices: AlertNotice) -> int:
    with engine.begin() as connection:
        return enqueue_deliveries(connection, notices, utc_moment(clock()))


def _drain(worker: DeliveryWorker, clock: FakeClock, engine: Engine) -> None:
    """Run the worker, jumping the clock to each next due time, until nothing is pending."""
    for _ in range(100):
        if worker.deliver_due():
            continue
        pending = [r for r in delivery_log(engine) if r.state is DeliveryState.PENDING]
        if not pending:
            return
        due = min(r.next_attempt_at for r in pending if r.next_attempt_at is not None)
        clock.now = max(clock.now, due.timestamp())
    pytest.fail("deliveries still pending after 100 rounds")


def test_a_receiver_that_always_fails_is_tried_max_attempts_times_then_failed(
    engine: Engine,
) -> None:
    """Exactly ``max_attempts`` POSTs, then the delivery is marked failed for good."""
    clock, receiver = FakeClock(), FakeReceiver(503)
    create_webhook(engine, MASTER_KEY, "clinic-a", "https://clinic.example/hook")
    _enqueue(engine, clock, _notice())
    worker = DeliveryWorker(engine, MASTER_KEY, POLICY, post=receiver, clock=clock)
    _drain(worker, clock, engine)
    (record,) = delivery_log(engine)
    assert len(receiver.requests) == POLICY.max_attempts
    assert (record.state, record.attempts, record.last_status) == (DeliveryState.FAILED, 4, 503)
    assert record.next_attempt_at is None
    clock.now += 3600
    assert worker.deliver_due() == 0


def test_retries_wait_for_their_backoff(engine: Engine) -> None:
    """After a failure nothing is sent before the retry is due; then it is, and a
    success ends the delivery."""
    clock, receiver = FakeClock(), FakeReceiver(500, 500, 200)
    create_webhook(engine, MASTER_KEY, "clinic-a", "https://clinic.example/hook")
    _enqueue(engine, clock, _notice())
    worker = DeliveryWorker(engine, MASTER_KEY, POLICY, post=receiver, clock=clock)
    assert worker.deliver_due() == 1
    (record,) = delivery_log(engine)
    assert record.next_attempt_at is not None
    wait = record.next_attempt_at.timestamp() - clock.now
    assert POLICY.base_s / 2 <= wait <= POLICY.base_s
    clock.now += wait / 2
    assert worker.deliver_due() == 0
    assert worker.seconds_until_due(idle_s=60) == pytest.approx(wait / 2, abs=1e-3)
    _drain(worker, clock, engine)
    (record,) = delivery_log(engine)
    assert (record.state, record.attempts, record.last_status) == (DeliveryState.DELIVERED, 3, 200)
    assert record.delivered_at is not None
    assert record.last_error is None


def test_each_attempt_is_signed_with_the_current_secret(engine: Engine) -> None:
    """A retry after a rotation is signed with the new secret, over the same body."""
    clock, receiver = FakeClock(), FakeReceiver(500, 200)
    webhook_id, first_secret = create_webhook(engine, MASTER_KEY, "clinic-a", "https://c.example/h")
    _enqueue(engine, clock, _notice())
    worker = DeliveryWorker(engine, MASTER_KEY, POLICY, post=receiver, clock=clock)
    worker.deliver_due()
    second_secret = rotate_secret(engine, MASTER_KEY, webhook_id)
    assert second_secret == derive_secret(MASTER_KEY, webhook_id, 2) != first_secret
    _drain(worker, clock, engine)
    (_, body_1, headers_1), (_, body_2, headers_2) = receiver.requests
    assert body_1 == body_2 == _notice().to_json()
    for (body, headers), secret in [((body_1, headers_1), first_secret),
                                    ((body_2, headers_2), second_secret)]:  # fmt: skip
        assert headers["X-Coreline-Event"] == "e-1"
        assert verify_signature(
            secret, headers["X-Coreline-Timestamp"], body, headers["X-Coreline-Signature"]
        )


def test_enqueueing_twice_adds_nothing_and_only_active_webhooks_of_the_clinic_get_rows(
    engine: Engine,
) -> None:
    """One row per (active webhook of the notice's clinic, event), however often a
    batch is enqueued; other clinics' and switched-off webhooks get none."""
    clock = FakeClock()
    first, _ = create_webhook(engine, MASTER_KEY, "clinic-a", "https://a.example/1")
    second, _ = create_webhook(engine, MASTER_KEY, "clinic-a", "https://a.example/2")
    switched_off, _ = create_webhook(engine, MASTER_KEY, "clinic-a", "https://a.example/3")
    create_webhook(engine, MASTER_KEY, "clinic-b", "https://b.example/1")
    set_webhook_active(engine, switched_off, active=False)
    notices = (_notice("e-1"), _notice("e-2"))
    assert _enqueue(engine, clock, *notices) == 4
    assert _enqueue(engine, clock, *notices) == 0
    rows = {(record.webhook_id, record.event_id) for record in delivery_log(engine)}
    assert rows == {(hook, event) for hook in (first, second) for event in ("e-1", "e-2")}


def test_an_attempt_whose_answer_was_lost_still_counts(engine: Engine) -> None:
    """A worker that died mid-attempt used that attempt up: once its lease runs out
    the delivery is retried, and with no attempts left it is marked failed unsent."""
    clock, receiver = FakeClock(), FakeReceiver(200)
    create_webhook(engine, MASTER_KEY, "clinic-a", "https://clinic.example/hook")
    _enqueue(engine, clock, _notice())
    now = utc_moment(clock())
    for _ in range(POLICY.max_attempts):  # every claim made, no answer recorded
        (due,) = due_deliveries(engine, now, limit=10)
        assert claim_attempt(engine, due, lease_until=now)
    worker = DeliveryWorker(engine, MASTER_KEY, POLICY, post=receiver, clock=clock)
    assert worker.deliver_due() == 0
    (record,) = delivery_log(engine)
    assert (record.state, record.attempts) == (DeliveryState.FAILED, POLICY.max_attempts)
    assert record.last_error == "no answer was recorded for the last attempt"
    assert receiver.requests == []


def test_a_claim_is_taken_once(engine: Engine) -> None:
    """Two workers that saw the same due delivery cannot both make its attempt."""
    clock = FakeClock()
    create_webhook(engine, MASTER_KEY, "clinic-a", "https://clinic.example/hook")
    _enqueue(engine, clock, _notice())
    now = utc_moment(clock())
    (due,) = due_deliveries(engine, now, limit=10)
    lease = now + timedelta(seconds=60)
    assert claim_attempt(engine, due, lease)
    assert not claim_attempt(engine, due, lease)
    assert due_deliveries(engine, now, limit=10) == []


def test_switched_off_webhooks_are_not_sent_to(engine: Engine) -> None:
    """Pending deliveries of a switched-off webhook wait, and do not keep the worker busy."""
    clock, receiver = FakeClock(), FakeReceiver(200)
    webhook_id, _ = create_webhook(engine, MASTER_KEY, "clinic-a", "https://clinic.example/hook")
    _enqueue(engine, clock, _notice())
    set_webhook_active(engine, webhook_id, active=False)
    worker = DeliveryWorker(engine, MASTER_KEY, POLICY, post=receiver, clock=clock)
    assert worker.deliver_due() == 0
    assert worker.seconds_until_due(idle_s=5.0) == 5.0
    set_webhook_active(engine, webhook_id, active=True)
    assert worker.deliver_due() == 1
    assert len(receiver.requests) == 1
