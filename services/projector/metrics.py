"""The projector's Prometheus metrics (served on ``/metrics`` by ``coreline projector``).

The projector records; nothing here decides anything.  Lag is measured on the
store's receive time, not the device's clock (device clocks can be wrong).
"""

from datetime import UTC, datetime
from typing import Final

from prometheus_client import Counter, Gauge, Histogram

from services.eventstore import Cursor

EVENTS_FOLDED: Final = Counter(
    "coreline_projector_events_folded_total", "Events read and folded into the read models"
)
BATCH_SECONDS: Final = Histogram(
    "coreline_projector_batch_seconds",
    "Time to fold one batch, append its alert events and commit it with the checkpoint",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
LAG_SECONDS: Final = Gauge(
    "coreline_projector_lag_seconds",
    "Now minus the gateway's receive time of the last event folded; 0 once a read finds "
    "nothing new",
)
CHECKPOINT_POSITION: Final = Gauge(
    "coreline_projector_checkpoint_position",
    "Store position of the last event folded (its place in the global order)",
)
ALERT_EVENTS: Final = Counter(
    "coreline_projector_alert_events_total",
    "Alert events newly appended to the store, by type (alert.raised, alert.escalated, "
    "alert.resolved)",
    ["type"],
)
DEAD_LETTERS_SEEN: Final = Counter(
    "coreline_projector_dead_letters_seen_total",
    "Dead letters the alert engine has looked at, by reason (integrity ones raise alerts)",
    ["reason"],
)


def batch_committed(events: int, last_received_at: datetime, checkpoint: Cursor) -> None:
    """A batch of ``events`` is committed, its last event received at ``last_received_at``."""
    EVENTS_FOLDED.inc(events)
    LAG_SECONDS.set(max(0.0, (datetime.now(UTC) - last_received_at).total_seconds()))
    CHECKPOINT_POSITION.set(checkpoint.position)


def caught_up() -> None:
    """A read found nothing after the checkpoint."""
    LAG_SECONDS.set(0)
