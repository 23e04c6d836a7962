"""``run_notifier``: the notifier as a process, for the CLI."""

import threading

from schemas.mqtt_url import BrokerAddress
from services.delivery.notifier import Notifier, NotifierOptions
from services.delivery.retry import RetryPolicy
from services.eventstore import open_event_store
from services.projections.read_store import ReadModelStore


def run_notifier(
    database_url: str,
    broker: BrokerAddress | None,
    master_key: bytes,
    stop: threading.Event,
    policy: RetryPolicy | None = None,
) -> None:
    """Publish and deliver alert notices until ``stop`` is set (``broker=None``:
    webhooks only)."""
    store = open_event_store(database_url)
    database = ReadModelStore(database_url)
    try:
        options = NotifierOptions(policy=policy or RetryPolicy())
        Notifier(store, database.engine, broker, master_key, options).run(stop)
    finally:
        store.close()
        database.close()
