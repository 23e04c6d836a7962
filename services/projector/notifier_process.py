"""``run_notifier``: the notifier as a process, beside the projector, for the CLI.

It lives here, above delivery and projections, because it wires the two together:
the notifier reads its checkpoint through the read-model database's engine."""

import threading

from services.delivery import Notifier, NotifierOptions, RetryPolicy
from services.delivery.email_sender import SmtpConfig
from services.eventstore import open_event_store
from services.projections.read_store import ReadModelStore
from transport import BrokerAddress


def run_notifier(
    database_url: str,
    broker: BrokerAddress | None,
    master_key: bytes,
    stop: threading.Event,
    policy: RetryPolicy | None = None,
    email: SmtpConfig | None = None,
) -> None:
    """Publish and deliver alert notices until ``stop`` is set (``broker=None``:
    webhooks only; ``email``: the SMTP relay for alert e-mail, if any)."""
    store = open_event_store(database_url)
    database = ReadModelStore(database_url)
    try:
        options = NotifierOptions(policy=policy or RetryPolicy(), email=email)
        Notifier(store, database.engine, broker, master_key, options).run(stop)
    finally:
        store.close()
        database.close()
