"""The projector's Prometheus metrics over a real (SQLite) store: what it folds, how far
behind it is, the alert events it appends and the dead letters it looks at."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

from prometheus_client import REGISTRY

from schemas import Rejection, RejectionReason, decode_event_batch
from services.eventstore import DeadLetter, EventStore, open_event_store, upgrade_schema
from services.projections.read_store import ReadModelStore
from services.projector import PROJECTOR, Projector
from tests.support.vectors import STREAM_DEVICES, batch_payload, load_stream


def sample(name: str, **labels: str) -> float:
    """The current value of one sample (0 when it was never set)."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


def append_vector_streams(store: EventStore, vectors_dir: Path, received_at: datetime) -> int:
    """Every vector stream, stamped as received at ``received_at``; how many events."""
    total = 0
    for device in STREAM_DEVICES:
        events = load_stream(vectors_dir, device)["events"]
        decoded = decode_event_batch(device, batch_payload(device, events))
        assert not decoded.rejections
        total += store.append(decoded.events, received_at=received_at).appended
    return total


def test_folding_counts_events_batches_alerts_and_measures_lag(
    sqlite_url: str, vectors_dir: Path
) -> None:
    """Every stored event is counted once as folded (the device events and the alert
    events the engine appended for them), each non-empty batch is timed, the lag is the
    age of the last folded event's receive time until a read finds nothing, and the
    checkpoint gauge shows the committed checkpoint."""
    store = open_event_store(sqlite_url)
    read_models = ReadModelStore(sqlite_url)
    hour_ago = datetime.now(UTC) - timedelta(hours=1)
    device_events = append_vector_streams(store, vectors_dir, hour_ago)
    folded_before = sample("coreline_projector_events_folded_total")
    batches_before = sample("coreline_projector_batch_seconds_count")
    raised_before = sample("coreline_projector_alert_events_total", type="alert.raised")
    projector = Projector(store, read_models, batch_size=40)

    first = projector.step()

    assert first == 40
    assert 3590 < sample("coreline_projector_lag_seconds") < 3700
    steps = 1
    while projector.step():
        steps += 1
    raised = sample("coreline_projector_alert_events_total", type="alert.raised") - raised_before
    # HP-000012 exceeds the coverage maximum, HP-000013 does not reconcile.
    assert raised >= 2
    assert sample("coreline_projector_events_folded_total") - folded_before == (
        device_events + raised
    )
    assert store.count_events() == device_events + raised
    assert sample("coreline_projector_batch_seconds_count") - batches_before == steps
    assert sample("coreline_projector_lag_seconds") == 0
    checkpoint = read_models.checkpoint(PROJECTOR)
    assert sample("coreline_projector_checkpoint_position") == checkpoint.position
    read_models.close()
    store.close()


def test_alert_events_decided_again_are_not_counted_twice(
    sqlite_url: str, vectors_dir: Path, tmp_path: Path
) -> None:
    """Alert events decided again (read models and alert book lost, everything refolded)
    are duplicates in the store, and the counter counts only what the store newly kept."""
    store = open_event_store(sqlite_url)
    append_vector_streams(store, vectors_dir, datetime.now(UTC))
    first = ReadModelStore(sqlite_url)
    while Projector(store, first).step():
        pass
    raised = sample("coreline_projector_alert_events_total", type="alert.raised")
    stored = store.count_events()
    first.close()
    elsewhere = f"sqlite:///{tmp_path / 'lost-read-models.db'}"
    upgrade_schema(elsewhere)
    second = ReadModelStore(elsewhere)  # empty read models and alert book, same events

    while Projector(store, second).step():
        pass

    assert store.count_events() == stored
    assert sample("coreline_projector_alert_events_total", type="alert.raised") == raised
    second.close()
    store.close()


def test_dead_letters_seen_by_the_alert_engine_are_counted_by_reason(sqlite_url: str) -> None:
    """The clock tick reads new dead letters once: each is counted under its reason, and
    a second tick counts nothing more."""
    store = open_event_store(sqlite_url)
    read_models = ReadModelStore(sqlite_url)
    letters = [
        DeadLetter(
            "coreline/v1/devices/HP-000001/events",
            Rejection(RejectionReason.SCHEMA, "not a batch", b"{}", "HP-000001"),
        ),
        DeadLetter(
            "coreline/v1/devices/HP-000001/events",
            Rejection(RejectionReason.MALFORMED, "not JSON", b"{", "HP-000001"),
        ),
    ]
    store.append([], letters)
    schema_before = sample("coreline_projector_dead_letters_seen_total", reason="schema")
    malformed_before = sample("coreline_projector_dead_letters_seen_total", reason="malformed")
    projector = Projector(store, read_models)

    projector.tick()
    projector.tick()

    seen = sample("coreline_projector_dead_letters_seen_total", reason="schema")
    assert seen - schema_before == 1
    seen = sample("coreline_projector_dead_letters_seen_total", reason="malformed")
    assert seen - malformed_before == 1
    read_models.close()
    store.close()
