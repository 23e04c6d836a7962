"""``Notifier``: turns alert events into notices on the clinic's MQTT topic and into
webhook deliveries, following the event store from its checkpoint.

Progress, and why a crash anywhere loses nothing and doubles nothing that matters:

1. read the events after the ``notifier`` checkpoint (other streams are passed over);
2. publish each notice at QoS 1 and wait until the broker has acknowledged all of
   them (PUBACK);
3. in one transaction: enqueue one delivery per notice and active webhook of its
   clinic, and move the checkpoint past the batch.

A crash before 3 commits re-reads the batch: its notices reach MQTT again (receivers
de-duplicate on ``event_id``) and the enqueue finds its rows already there
(``ON CONFLICT DO NOTHING`` on webhook and event), so a webhook has one delivery per
notice however often its batch is handled.  Sending is the ``DeliveryWorker``'s job,
on its own thread; only its failed attempts are repeated.
"""

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final

from sqlalchemy import Engine

from schemas import AlertAcknowledged, AlertRaised, AlertResolved, clinic_alerts_topic
from services.delivery.delivery_log import enqueue_deliveries
from services.delivery.http_post import notice_poster
from services.delivery.moments import utc_moment
from services.delivery.mqtt_publisher import AlertPublisher
from services.delivery.notice import AlertNotice, build_notice, is_alert_stream
from services.delivery.retry import RetryPolicy
from services.delivery.worker import DeliveryWorker
from services.egress import EgressGate, EgressSettings
from services.eventstore import EventStore, StoredEvent, load_checkpoint, save_checkpoint
from transport import BrokerAddress

log = logging.getLogger(__name__)

NOTIFIER: Final = "notifier"
"""The notifier's checkpoint name."""


@dataclass(frozen=True, slots=True)
class NotifierOptions:
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    batch_size: int = 1000
    ack_timeout_s: float = 10.0
    """How long a batch waits for the broker's PUBACKs before it is retried."""
    client_id: str = "coreline-notifier"
    """One notifier per client id: the broker keeps its session under this name."""
    egress: EgressGate | None = None
    """Where webhook deliveries may go; ``None``: public addresses and the operator's
    ``CORELINE_EGRESS_ALLOW``."""


class Notifier:
    """Publishes and enqueues alert notices batch by batch (``step``), and with
    ``run`` also sends the webhook deliveries on a thread of their own."""

    def __init__(
        self,
        store: EventStore,
        engine: Engine,
        broker: BrokerAddress | None,
        master_key: bytes,
        options: NotifierOptions | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._engine = engine
        self._clock = clock
        self.options = options or NotifierOptions()
        self.publisher = (
            AlertPublisher(broker, self.options.client_id) if broker is not None else None
        )
        egress = self.options.egress or EgressGate(EgressSettings().allow_list())
        self.worker = DeliveryWorker(
            engine, master_key, self.options.policy, post=notice_poster(egress), clock=clock
        )
        self._started = False

    def start(self) -> None:
        """Connect to the broker (in the background: notices wait for it)."""
        if self.publisher is not None and not self._started:
            self.publisher.start()
        self._started = True

    def close(self) -> None:
        if self.publisher is not None and self._started:
            self.publisher.stop()
        self._started = False

    def step(self) -> int:
        """Handle the next batch; how many events it passed (0: caught up, or the
        broker has not acknowledged the batch's notices yet; it is retried)."""
        self.start()
        with self._engine.connect() as connection:
            checkpoint = load_checkpoint(connection, NOTIFIER)
        stored = self._store.read(checkpoint, self.options.batch_size)
        if not stored:
            return 0
        notices = self._notices(stored)
        routed = [notice for notice in notices if notice.clinic_id is not None]
        if not self._published(routed):
            return 0
        with self._engine.begin() as connection:
            enqueued = enqueue_deliveries(connection, routed, utc_moment(self._clock()))
            save_checkpoint(connection, NOTIFIER, stored[-1].cursor)
        if self.publisher is not None:
            self.publisher.forget(notice.event_id for notice in routed)
        if enqueued:
            self.worker.wake.set()
        return len(stored)

    def run(self, stop: threading.Event, idle_wait_s: float = 1.0) -> None:
        """Follow the store until ``stop`` is set.  A failure of the database ends it
        (as it ends the projector): a restart resumes from the checkpoint."""
        self.start()
        halted = threading.Event()  # the sender stops with this loop, however it ends
        sender = threading.Thread(
            target=self.worker.run, args=(halted,), name="webhook-delivery", daemon=True
        )
        sender.start()
        try:
            while not stop.is_set():
                if self.step() == 0:
                    self._store.wait_for_appends(idle_wait_s)
        finally:
            halted.set()
            self.worker.wake.set()
            sender.join(timeout=self.worker.policy.timeout_s + 5)
            self.close()

    def _published(self, routed: Sequence[AlertNotice]) -> bool:
        if self.publisher is None or not routed:
            return True
        for notice in routed:
            topic = clinic_alerts_topic(notice.clinic_id or "")
            self.publisher.publish(notice.event_id, topic, notice.to_json())
        keys = [notice.event_id for notice in routed]
        if self.publisher.wait_acknowledged(keys, self.options.ack_timeout_s):
            return True
        log.warning(
            "the broker has not acknowledged %d alert notices yet; the batch waits", len(keys)
        )
        return False

    def _notices(self, stored: Sequence[StoredEvent]) -> list[AlertNotice]:
        raised_in_batch: dict[str, AlertRaised] = {}
        notices: list[AlertNotice] = []
        for event in stored:
            if not is_alert_stream(event.stream_id):
                continue
            change = event.sealed().event
            if isinstance(change, AlertRaised):
                raised_in_batch[event.stream_id] = change
            if not isinstance(change, AlertRaised | AlertAcknowledged | AlertResolved):
                continue
            raised = raised_in_batch.get(event.stream_id) or self._raised(event.stream_id)
            if raised is None:
                log.error("%s: %s without a stored alert.raised; skipped", event.stream_id,
                          event.type)  # fmt: skip
                continue
            notice = build_notice(change, raised)
            _log_notice(notice)
            notices.append(notice)
        return notices

    def _raised(self, stream_id: str) -> AlertRaised | None:
        first = self._store.read_stream(stream_id, 1, 1)
        event = first[0].sealed().event if first else None
        return event if isinstance(event, AlertRaised) else None


def _log_notice(notice: AlertNotice) -> None:
    where = f"clinic {notice.clinic_id}" if notice.clinic_id else "no clinic (not published)"
    log.info(
        "alert %s %s: %s %s on %s (%s), %s",
        notice.alert_id, notice.state.value, notice.severity, notice.rule, notice.device_id,
        notice.subject, where,
    )  # fmt: skip
