"""Sends due webhook deliveries, in threads of its own, so a slow or dead receiver
delays only other webhook deliveries, never the MQTT path.

Each attempt is signed when it is made (a fresh timestamp, the webhook's current
secret), over the notice bytes stored when the delivery was enqueued.
"""

import logging
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Final

from sqlalchemy import Engine

from services.delivery.delivery_log import (
    DueDelivery,
    claim_attempt,
    due_deliveries,
    give_up,
    next_due_at,
    record_outcome,
)
from services.delivery.http_post import PostNotice, notice_poster
from services.delivery.moments import utc_moment
from services.delivery.retry import Delivered, GaveUp, RetryPolicy, after_attempt
from services.delivery.signature import derive_secret, signed_headers
from services.egress import EgressGate

log = logging.getLogger(__name__)

_LEASE_MARGIN_S: Final = 30.0
"""Beyond the request timeout, before an unanswered claim may be taken over."""


class DeliveryWorker:
    def __init__(
        self,
        engine: Engine,
        master_key: bytes,
        policy: RetryPolicy | None = None,
        *,
        post: PostNotice | None = None,
        clock: Callable[[], float] = time.time,
        concurrency: int = 8,
        rng: random.Random | None = None,
    ) -> None:
        self._engine = engine
        self._master_key = master_key
        self.policy = policy or RetryPolicy()
        self._post = post or notice_poster(EgressGate())
        """By default only public addresses are reached."""
        self._clock = clock
        self._concurrency = concurrency
        self._rng = rng or random.Random()  # noqa: S311 - jitter needs spread, not secrecy
        self._rng_lock = threading.Lock()
        self.wake = threading.Event()
        """Set when deliveries were enqueued, so they go now rather than at the next poll."""

    def deliver_due(self) -> int:
        """Make every due attempt (up to a batch), in parallel; how many were made."""
        now = utc_moment(self._clock())
        due = due_deliveries(self._engine, now, limit=self._concurrency * 4)
        lease_until = now + timedelta(seconds=self.policy.timeout_s + _LEASE_MARGIN_S)
        claimed: list[DueDelivery] = []
        for delivery in due:
            if delivery.attempts >= self.policy.max_attempts:
                # Its last attempt was claimed by a worker that never recorded the answer.
                give_up(self._engine, delivery, "no answer was recorded for the last attempt")
            elif claim_attempt(self._engine, delivery, lease_until):
                claimed.append(delivery)
        if len(claimed) == 1:
            self._attempt(claimed[0])
        elif claimed:
            with ThreadPoolExecutor(min(self._concurrency, len(claimed))) as pool:
                list(pool.map(self._attempt, claimed))
        return len(claimed)

    def seconds_until_due(self, idle_s: float) -> float:
        """How long the worker may sleep: until the next pending delivery is due, at
        most ``idle_s``."""
        due_at = next_due_at(self._engine)
        if due_at is None:
            return idle_s
        return min(idle_s, max(0.0, due_at.timestamp() - self._clock()))

    def run(self, stop: threading.Event, idle_s: float = 5.0) -> None:
        """Deliver until ``stop`` is set; a database outage is waited out, not fatal."""
        while not stop.is_set():
            try:
                if self.deliver_due():
                    continue
                pause = self.seconds_until_due(idle_s)
            except Exception:  # the database is away: keep going
                log.warning("webhook delivery paused: database unavailable", exc_info=True)
                pause = idle_s
            if self.wake.wait(pause):
                self.wake.clear()

    def _attempt(self, delivery: DueDelivery) -> None:
        attempt = delivery.attempts + 1
        sent_at = self._clock()
        secret = derive_secret(self._master_key, delivery.webhook_id, delivery.secret_version)
        headers = signed_headers(secret, int(sent_at), delivery.payload, delivery.event_id)
        result = self._post(delivery.url, delivery.payload, headers, self.policy.timeout_s)
        with self._rng_lock:
            outcome = after_attempt(self.policy, attempt, result, self._rng)
        record_outcome(self._engine, delivery.id, attempt, outcome, utc_moment(self._clock()))
        if result.detail is not None:
            # The operator's log may say what the clinic's delivery log must not.
            log.warning("webhook %s: %s (%s)", delivery.webhook_id, result.summary, result.detail)
        if isinstance(outcome, Delivered):
            log.info("webhook %s: delivered %s", delivery.webhook_id, delivery.event_id)
        elif isinstance(outcome, GaveUp):
            log.error(
                "webhook %s: gave up on %s after %d attempts (%s)",
                delivery.webhook_id, delivery.event_id, attempt, outcome.error,
            )  # fmt: skip
        else:
            log.info(
                "webhook %s: attempt %d for %s failed (%s); retrying in %.1fs",
                delivery.webhook_id, attempt, delivery.event_id, outcome.error, outcome.delay_s,
            )  # fmt: skip
