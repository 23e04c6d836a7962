"""The gateway's Prometheus metrics (served on ``/metrics``)."""

from typing import Final

from prometheus_client import Counter, Gauge, Histogram

MESSAGES: Final = Counter(
    "coreline_gateway_messages_total", "MQTT messages received, by channel", ["channel"]
)
EVENTS_RECEIVED: Final = Counter("coreline_gateway_events_received_total", "Events decoded")
EVENTS_APPENDED: Final = Counter("coreline_gateway_events_appended_total", "Events newly stored")
DUPLICATES: Final = Counter(
    "coreline_gateway_duplicates_total", "Events already stored with the same hash (redelivery)"
)
DEAD_LETTERS: Final = Counter(
    "coreline_gateway_dead_letters_total", "Input dead-lettered, by reason", ["reason"]
)
HEARTBEATS: Final = Counter("coreline_gateway_heartbeats_total", "Telemetry samples stored")
TELEMETRY_DROPPED: Final = Counter(
    "coreline_gateway_telemetry_dropped_total",
    "QoS 0 samples dropped because the gateway was saturated",
)
BATCH_EVENTS: Final = Histogram(
    "coreline_gateway_batch_events",
    "Events per store commit",
    buckets=(1, 5, 10, 50, 100, 250, 500, 1000, 2500, 5000),
)
COMMIT_SECONDS: Final = Histogram(
    "coreline_gateway_commit_seconds",
    "Store commit latency",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
STORE_FAILURES: Final = Counter(
    "coreline_gateway_store_failures_total", "Commits that failed and were retried"
)
GAPS_REQUESTED: Final = Counter(
    "coreline_gateway_resend_requests_total", "Resend commands published for gaps"
)
GAPS_OPEN: Final = Gauge("coreline_gateway_gaps_open", "Gaps waiting to be filled")
GAPS_ABANDONED: Final = Counter(
    "coreline_gateway_gaps_abandoned_total", "Gaps still open after every resend attempt"
)
IN_FLIGHT: Final = Gauge(
    "coreline_gateway_in_flight_messages", "Messages received and not yet acknowledged"
)
CONNECTED: Final = Gauge("coreline_gateway_connected", "1 while connected to the broker")
ACKS_PUBLISHED: Final = Counter(
    "coreline_gateway_acks_published_total", "Platform acknowledgements published to devices"
)
TAILS_REQUESTED: Final = Counter(
    "coreline_gateway_tail_requests_total",
    "Resend commands for a tail a device reported on coming online",
)
SEALS_VERIFIED: Final = Counter(
    "coreline_gateway_seals_verified_total", "Batch seals that verified under a registered key"
)
