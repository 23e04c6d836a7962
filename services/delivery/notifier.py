"""``Notifier``: turns alert events into notices on the clinic's MQTT topic, into
webhook deliveries and into alert e-mail for the users who chose it, following the
event store from its checkpoint.

Progress, and why a crash anywhere loses nothing and doubles nothing that matters:

1. read the alert streams' events after the ``notifier`` checkpoint (the store looks
   past the other streams' events without handing them over, so following ingest at
   thousands of events a second costs this process almost nothing);
2. publish each notice at QoS 1 and wait until the broker has acknowledged all of
   them (PUBACK);
3. in one transaction: enqueue one delivery per notice and active webhook of its
   clinic, one e-mail per notice and user who wants it, and move the checkpoint
   past the batch.

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

from schemas import (
    AlertAcknowledged,
    AlertEscalated,
    AlertRaised,
    AlertResolved,
    clinic_alert_state_topic,
    clinic_alerts_topic,
)
from services.delivery.delivery_log import enqueue_deliveries
from services.delivery.email_log import enqueue_emails
from services.delivery.email_sender import EmailWorker, SmtpConfig
from services.delivery.http_post import notice_poster
from services.delivery.moments import utc_moment
from services.delivery.mqtt_publisher import AlertPublisher
from services.delivery.notice import (
    ALERT_STREAM_PREFIX,
    AlertNotice,
    AlertState,
    build_notice,
    is_alert_stream,
)
from services.delivery.retry import RetryPolicy
from services.delivery.worker import DeliveryWorker
from services.egress import EgressGate, EgressSettings
from services.eventstore import (
    Cursor,
    EventStore,
    StoredEvent,
    load_checkpoint,
    save_checkpoint,
)
from transport import BrokerAddress

log = logging.getLogger(__name__)

NOTIFIER: Final = "notifier"
"""The notifier's checkpoint name."""
_PASSED_SAVED_EVERY_S: Final = 1.0
"""How often the checkpoint is moved past other streams' events alone: every append
wakes the notifier, and a commit for each would cost more than reading them again
after a restart (they hold no notice)."""
_RETAINED: Final = "|state"
"""Tracking key suffix of a notice's retained copy on its alert's own topic."""


@dataclass(frozen=True, slots=True)
class NotifierOptions:
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    batch_size: int = 1000
    ack_timeout_s: float = 10.0
    """How long a batch waits for the broker's PUBACKs before it is retried."""
    client_id: str = "coreline-notifier"
    """One notifier per client id: the broker keeps its session under this name."""
    egress: EgressGate | None = None
    """Where webhook deliveries and e-mail may go; ``None``: public addresses and the
    operator's ``CORELINE_EGRESS_ALLOW``."""
    email: SmtpConfig | None = None
    """The SMTP relay for alert e-mail (``CORELINE_SMTP_*``); ``None``: no e-mail."""


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
        email = self.options.email
        self.mailer = (
            None
            if email is None
            else EmailWorker(engine, email, self.options.policy, clock=clock, gate=egress)
        )
        self._started = False
        self._passed: tuple[Cursor, Cursor] | None = None
        """(the checkpoint as stored, how far past it only other streams' events lie):
        read on from there while the stored checkpoint is still that one."""
        self._saved_at = -_PASSED_SAVED_EVERY_S

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
        """Handle the next batch; how many alert events it passed, at least 1 when it
        moved past other streams' events only (0: caught up, or the broker has not
        acknowledged the batch's notices yet; it is retried)."""
        self.start()
        with self._engine.connect() as connection:
            checkpoint = load_checkpoint(connection, NOTIFIER)
        passed = self._passed
        start = passed[1] if passed is not None and passed[0] == checkpoint else checkpoint
        stored, through = self._store.read_matching(
            start, self.options.batch_size, stream_prefix=ALERT_STREAM_PREFIX
        )
        if through == start:
            return 0
        if not stored and time.monotonic() - self._saved_at < _PASSED_SAVED_EVERY_S:
            self._passed = (checkpoint, through)
            return 1
        notices = self._notices(stored)
        routed = [notice for notice in notices if notice.clinic_id is not None]
        if not self._published(routed):
            return 0
        mailed = 0
        with self._engine.begin() as connection:
            now = utc_moment(self._clock())
            enqueued = enqueue_deliveries(connection, routed, now)
            if self.mailer is not None:
                mailed = enqueue_emails(connection, routed, now)
            save_checkpoint(connection, NOTIFIER, through)
        self._passed = None
        self._saved_at = time.monotonic()
        if self.publisher is not None:
            self.publisher.forget(
                key
                for notice in routed
                for key in (notice.event_id, f"{notice.event_id}{_RETAINED}")
            )
        if enqueued:
            self.worker.wake.set()
        if mailed and self.mailer is not None:
            self.mailer.wake.set()
        return max(len(stored), 1)

    def run(self, stop: threading.Event, idle_wait_s: float = 1.0) -> None:
        """Follow the store until ``stop`` is set.  A failure of the database ends it
        (as it ends the projector): a restart resumes from the checkpoint."""
        self.start()
        halted = threading.Event()  # the sender stops with this loop, however it ends
        sender = threading.Thread(
            target=self.worker.run, args=(halted,), name="webhook-delivery", daemon=True
        )
        sender.start()
        mailer = None
        if self.mailer is not None:
            mailer = threading.Thread(
                target=self.mailer.run, args=(halted,), name="alert-email", daemon=True
            )
            mailer.start()
        try:
            while not stop.is_set():
                if self.step() == 0:
                    # Devices' appends (nearly all of them) do not wake it: it reads
                    # on past them when an alert's append or the timeout does.
                    self._store.wait_for_appends(idle_wait_s, stream_prefix=ALERT_STREAM_PREFIX)
        finally:
            halted.set()
            self.worker.wake.set()
            sender.join(timeout=self.worker.policy.timeout_s + 5)
            if mailer is not None and self.mailer is not None:
                self.mailer.wake.set()
                mailer.join(timeout=self.mailer.policy.timeout_s + 5)
            self.close()

    def _published(self, routed: Sequence[AlertNotice]) -> bool:
        if self.publisher is None or not routed:
            return True
        keys: list[str] = []
        for notice in routed:
            clinic = notice.clinic_id or ""
            self.publisher.publish(notice.event_id, clinic_alerts_topic(clinic), notice.to_json())
            # The alert's own topic keeps its latest state, retained: an escalation
            # replaces the raise there; the resolution clears it (open alerts only).
            closed = notice.state is AlertState.RESOLVED
            state_key = f"{notice.event_id}{_RETAINED}"
            self.publisher.publish(
                state_key, clinic_alert_state_topic(clinic, notice.alert_id),
                b"" if closed else notice.to_json(), retain=True,
            )  # fmt: skip
            keys += [notice.event_id, state_key]
        if self.publisher.wait_acknowledged(keys, self.options.ack_timeout_s):
            return True
        log.warning(
            "the broker has not acknowledged %d alert notices yet; the batch waits", len(keys)
        )
        return False

    def _notices(self, stored: Sequence[StoredEvent]) -> list[AlertNotice]:
        known: dict[str, tuple[AlertRaised, AlertEscalated | None]] = {}
        notices: list[AlertNotice] = []
        for event in stored:
            if not is_alert_stream(event.stream_id):
                continue
            change = event.sealed().event
            if not isinstance(
                change, AlertRaised | AlertEscalated | AlertAcknowledged | AlertResolved
            ):
                continue
            if isinstance(change, AlertRaised) and change.seq == 1:
                known[event.stream_id] = (change, None)
            alert = known.get(event.stream_id) or self._alert(event.stream_id, change.seq)
            if alert is None:
                log.error("%s: %s without a stored alert.raised; skipped", event.stream_id,
                          event.type)  # fmt: skip
                continue
            raised, escalation = alert
            if isinstance(change, AlertEscalated):
                escalation = change
            known[event.stream_id] = (raised, escalation)
            notice = build_notice(change, raised, escalation)
            _log_notice(notice)
            notices.append(notice)
        return notices

    def _alert(self, stream_id: str, seq: int) -> tuple[AlertRaised, AlertEscalated | None] | None:
        """The alert's raise and its newest escalation before ``seq``, from its stream."""
        before = self._store.read_stream(stream_id, 1, seq - 1) if seq > 1 else []
        events = [stored.sealed().event for stored in before]
        raised = events[0] if events else None
        if not isinstance(raised, AlertRaised):
            return None
        climbed = [event for event in events if isinstance(event, AlertEscalated)]
        return raised, (climbed[-1] if climbed else None)


def _log_notice(notice: AlertNotice) -> None:
    where = f"clinic {notice.clinic_id}" if notice.clinic_id else "no clinic (not published)"
    log.info(
        "alert %s %s: %s %s on %s (%s), %s",
        notice.alert_id, notice.state.value, notice.severity, notice.rule, notice.device_id,
        notice.subject, where,
    )  # fmt: skip
